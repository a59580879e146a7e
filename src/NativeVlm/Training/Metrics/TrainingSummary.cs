using System.Globalization;

namespace NativeVlm.Training.Metrics;

/// <summary>Where a run's outputs are; null for one it did not write.</summary>
public sealed record TrainingOutputs(string? AdapterDirectory, string? MetricsFile, string? TensorBoardDirectory, string? PlotFile);

/// <summary>
/// The few lines printed when training ends:
/// <code>
/// Trained 300 steps (3.00 epochs) in 0:12:34.
/// loss: final 0.1234 (step 300), best 0.1100 (step 280)
/// eval loss: final 0.2000 (step 300), best 0.1900 (step 250)
/// reward accuracy: final 0.950 (step 300), eval 0.920 (step 300)
/// adapter:     out/
/// metrics:     out/metrics.jsonl
/// TensorBoard: out/runs (tensorboard --logdir out/runs)
/// plot:        out/training_curves.png
/// </code>
/// A line whose metric was never logged, or whose output was not written, is left out.
/// </summary>
public static class TrainingSummary
{
    /// <param name="steps">Optimizer steps taken, which the last logged step may be short of.</param>
    /// <param name="epochs">Epochs covered, fractional.</param>
    public static string Format(MetricsHistory history, long steps, double epochs, TimeSpan elapsed, TrainingOutputs outputs)
    {
        var lines = new List<string>
        {
            Invariant($"Trained {steps} steps ({epochs:F2} epochs) in {(long)elapsed.TotalHours}:{elapsed.Minutes:00}:{elapsed.Seconds:00}."),
        };
        AddLossLine(lines, history, "loss", "loss");
        AddLossLine(lines, history, "eval_loss", "eval loss");
        var accuracy = new List<string>();
        if (history.Last("rewards/accuracies") is (long trainStep, double train))
        {
            accuracy.Add(Invariant($"final {train:F3} (step {trainStep})"));
        }
        if (history.Last("eval_rewards/accuracies") is (long evalStep, double eval))
        {
            accuracy.Add(Invariant($"eval {eval:F3} (step {evalStep})"));
        }
        if (accuracy.Count > 0)
        {
            lines.Add("reward accuracy: " + string.Join(", ", accuracy));
        }
        AddPathLine(lines, "adapter:", outputs.AdapterDirectory);
        AddPathLine(lines, "metrics:", outputs.MetricsFile);
        if (outputs.TensorBoardDirectory is { } runs)
        {
            AddPathLine(lines, "TensorBoard:", $"{runs} (tensorboard --logdir {runs})");
        }
        AddPathLine(lines, "plot:", outputs.PlotFile);
        return string.Join(Environment.NewLine, lines);
    }

    /// <summary>
    /// "name: final x (step s), best y (step t)", lowest being best. The final value is the last logged,
    /// NaN included, since a run that diverged should say so; the best is the lowest finite one.
    /// </summary>
    private static void AddLossLine(List<string> lines, MetricsHistory history, string metric, string label)
    {
        if (history.Last(metric) is not (long finalStep, double final))
        {
            return;
        }
        string line = Invariant($"{label}: final {final:F4} (step {finalStep})");
        (double[] steps, double[] values) = history.Series(metric);
        if (values.Length > 0)
        {
            int best = Array.IndexOf(values, values.Min());
            line += Invariant($", best {values[best]:F4} (step {(long)steps[best]})");
        }
        lines.Add(line);
    }

    private static void AddPathLine(List<string> lines, string label, string? path)
    {
        if (path is not null)
        {
            lines.Add($"{label,-12} {path}");
        }
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
