namespace NativeVlm.Training;

/// <summary>What one micro-batch gave: metrics under TRL's names ("loss", "rewards/chosen", …).</summary>
public sealed record ObjectiveStep(IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// A training objective over batches of one kind: the trainer owns the loop, the objective owns the
/// forward and backward of one micro-batch.
/// </summary>
public interface ITrainingObjective<in TBatch>
{
    /// <summary>
    /// Forward and backward of <paramref name="batch"/>: the gradient of loss × <paramref name="lossScale"/>
    /// (1 / gradient_accumulation_steps) is added into the trainable parameters' gradients. The metrics
    /// are unscaled.
    /// </summary>
    ObjectiveStep Step(TBatch batch, double lossScale);

    /// <summary>The same metrics without recording a gradient (evaluation; the trainer prefixes them with eval_).</summary>
    ObjectiveStep Evaluate(TBatch batch);
}
