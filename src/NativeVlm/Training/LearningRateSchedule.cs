namespace NativeVlm.Training;

/// <summary>
/// transformers' get_linear / get_cosine / get_constant(_with_warmup)_schedule as LambdaLR sees them:
/// the learning rate used by optimizer step s (0-based: the first update uses s = 0) is
/// learning_rate × λ(s), and scheduler.step() moves to s + 1.
/// </summary>
public sealed class LearningRateSchedule
{
    public LearningRateSchedule(string type, double learningRate, long warmupSteps, long trainingSteps)
    {
        if (type is not ("linear" or "cosine" or "constant" or "constant_with_warmup"))
        {
            throw new ArgumentException($"lr_scheduler_type '{type}': expected linear, cosine, constant or constant_with_warmup");
        }
        (Type, LearningRate, WarmupSteps, TrainingSteps) = (type, learningRate, warmupSteps, trainingSteps);
    }

    public string Type { get; }

    public double LearningRate { get; }

    public long WarmupSteps { get; }

    public long TrainingSteps { get; }

    /// <summary>transformers' get_warmup_steps: warmup_steps when positive, else ceil(training steps × warmup_ratio).</summary>
    public static long ResolveWarmupSteps(long warmupSteps, double warmupRatio, long trainingSteps) =>
        warmupSteps > 0 ? warmupSteps : (long)Math.Ceiling(trainingSteps * warmupRatio);

    /// <summary>The learning rate optimizer step <paramref name="step"/> (0-based) uses.</summary>
    public double At(long step) => LearningRate * Lambda(step);

    private double Lambda(long step)
    {
        if (Type == "constant")
        {
            return 1.0;
        }
        if (step < WarmupSteps)
        {
            return (double)step / Math.Max(1, WarmupSteps);
        }
        double remaining = Math.Max(1, TrainingSteps - WarmupSteps);
        return Type switch
        {
            "linear" => Math.Max(0.0, (TrainingSteps - step) / remaining),
            // num_cycles = 0.5: half a cosine from 1 down to 0 over the steps after warmup.
            "cosine" => Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * 0.5 * 2.0 * ((step - WarmupSteps) / remaining)))),
            _ => 1.0,
        };
    }
}
