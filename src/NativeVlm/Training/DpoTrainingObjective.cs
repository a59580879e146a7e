using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Training.Dpo;

namespace NativeVlm.Training;

/// <summary>The DPO objective (Training/Dpo) as the trainer drives it: one DpoBatch per micro-batch, TRL's metric names.</summary>
public sealed class DpoTrainingObjective(DpoObjective dpo, LoraAdapterSet adapters) : ITrainingObjective<DpoBatch>
{
    /// <summary>
    /// Precomputed reference log-probs (precompute_ref_log_probs): every pair of every batch is looked up
    /// there instead of running the reference model. Null: the reference model runs on every batch.
    /// </summary>
    public ReferenceLogProbCache? References { get; init; }

    public ObjectiveStep Step(DpoBatch batch, double lossScale) => new(dpo.Step(batch, lossScale, References?.Lookup(batch)).Metrics);

    /// <summary>
    /// DpoObjective has no gradient-free pass yet: this runs its step with loss scale 0 (gradients of
    /// zero) and drops the gradients it made, so evaluation leaves no trace on the next step.
    /// </summary>
    public ObjectiveStep Evaluate(DpoBatch batch)
    {
        IReadOnlyDictionary<string, double> metrics = dpo.Step(batch, 0.0, References?.Lookup(batch)).Metrics;
        foreach (Tensors.Tensor parameter in adapters.Parameters)
        {
            parameter.Grad?.Dispose();
            parameter.Grad = null;
        }
        return new ObjectiveStep(metrics);
    }

    /// <summary>Fills <see cref="References"/> with the reference log-probs of every sample of <paramref name="data"/> not cached yet.</summary>
    public void PrecomputeReferences(ITrainingData<DpoBatch> data) =>
        (References ?? throw new InvalidOperationException("no reference cache to fill: set References"))
            .Precompute(data, dpo.ReferenceLogProbs);
}
