using NativeVlm.Training.Metrics;
using Xunit;

namespace NativeVlm.Tests.Training.Metrics;

/// <summary>The lines printed at the end of a run, exactly.</summary>
public class TrainingSummaryTests
{
    [Fact]
    public void A_dpo_run_reports_losses_accuracies_and_where_its_outputs_are()
    {
        var history = new MetricsHistory();
        history.Log(10, 0.5, new Dictionary<string, double> { ["loss"] = 0.6, ["rewards/accuracies"] = 0.625 });
        history.Log(10, 0.5, new Dictionary<string, double> { ["eval_loss"] = 0.65, ["eval_rewards/accuracies"] = 0.6 });
        history.Log(20, 1.0, new Dictionary<string, double> { ["loss"] = 0.3, ["rewards/accuracies"] = 0.875 });
        history.Log(30, 1.5, new Dictionary<string, double> { ["loss"] = 0.35, ["rewards/accuracies"] = 0.95 });
        history.Log(30, 1.5, new Dictionary<string, double> { ["eval_loss"] = 0.4, ["eval_rewards/accuracies"] = 0.925 });

        string summary = TrainingSummary.Format(history, steps: 32, epochs: 1.6, new TimeSpan(1, 2, 3, 4),
            new TrainingOutputs("out", "out/metrics.jsonl", "out/runs", "out/training_curves.png"));

        string[] expected =
        [
            "Trained 32 steps (1.60 epochs) in 26:03:04.",
            "loss: final 0.3500 (step 30), best 0.3000 (step 20)",
            "eval loss: final 0.4000 (step 30), best 0.4000 (step 30)",
            "reward accuracy: final 0.950 (step 30), eval 0.925 (step 30)",
            "adapter:     out",
            "metrics:     out/metrics.jsonl",
            "TensorBoard: out/runs (tensorboard --logdir out/runs)",
            "plot:        out/training_curves.png",
        ];
        Assert.Equal(string.Join(Environment.NewLine, expected), summary);
    }

    [Fact]
    public void A_diverged_run_says_its_final_loss_is_nan_and_leaves_out_what_it_lacks()
    {
        var history = new MetricsHistory();
        history.Log(5, 0.25, new Dictionary<string, double> { ["loss"] = 2.5 });
        history.Log(10, 0.5, new Dictionary<string, double> { ["loss"] = double.NaN });

        string summary = TrainingSummary.Format(history, steps: 10, epochs: 0.5, TimeSpan.FromSeconds(75),
            new TrainingOutputs("out", null, null, null));

        Assert.Equal(string.Join(Environment.NewLine,
            "Trained 10 steps (0.50 epochs) in 0:01:15.",
            "loss: final NaN (step 10), best 2.5000 (step 5)",
            "adapter:     out"), summary);
    }
}
