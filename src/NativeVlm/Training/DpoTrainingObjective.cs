using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Training.Dpo;

namespace NativeVlm.Training;

/// <summary>The DPO objective (Training/Dpo) as the trainer drives it: one DpoBatch per micro-batch, TRL's metric names.</summary>
public sealed class DpoTrainingObjective(DpoObjective dpo, LoraAdapterSet adapters) : ITrainingObjective<DpoBatch>
{
    public ObjectiveStep Step(DpoBatch batch, double lossScale) => new(dpo.Step(batch, lossScale).Metrics);

    /// <summary>
    /// DpoObjective has no gradient-free pass yet: this runs its step with loss scale 0 (gradients of
    /// zero) and drops the gradients it made, so evaluation leaves no trace on the next step.
    /// </summary>
    public ObjectiveStep Evaluate(DpoBatch batch)
    {
        IReadOnlyDictionary<string, double> metrics = dpo.Step(batch, 0.0).Metrics;
        foreach (Tensors.Tensor parameter in adapters.Parameters)
        {
            parameter.Grad?.Dispose();
            parameter.Grad = null;
        }
        return new ObjectiveStep(metrics);
    }
}
