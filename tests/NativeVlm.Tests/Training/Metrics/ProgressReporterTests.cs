using NativeVlm.Training.Metrics;
using Xunit;

namespace NativeVlm.Tests.Training.Metrics;

/// <summary>The console progress: plain lines when redirected, one line redrawn in place on a terminal; exact text, with a clock the test moves.</summary>
public class ProgressReporterTests
{
    private static readonly DateTimeOffset Start = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);

    [Fact]
    public void Redirected_output_gets_one_line_per_step_evaluation_and_event()
    {
        var clock = new ManualClock(Start);
        var output = new StringWriter { NewLine = "\n" };
        using (var progress = new ProgressReporter(100, output, redrawInPlace: false, clock, columns: () => 0))
        {
            progress.Log(10, 0.1, new Dictionary<string, double> { ["loss"] = 0.69314, ["rewards/accuracies"] = 0.5, ["samples_per_second"] = 4 });
            clock.Advance(TimeSpan.FromSeconds(20));
            progress.Log(20, 0.2, new Dictionary<string, double> { ["loss"] = 0.5, ["samples_per_second"] = 3.96, ["grad_norm"] = 1 });
            progress.Log(20, 0.2, new Dictionary<string, double> { ["eval_loss"] = 0.7, ["eval_rewards/accuracies"] = 0.9 });
            progress.Event("checkpoint written: out/checkpoint-20");
            clock.Advance(TimeSpan.FromSeconds(160));
            progress.Log(100, 1, new Dictionary<string, double> { ["loss"] = 0.25 });
        }
        // ETA: the pace since the first logged step (20 s for 10 steps), times the steps left (80).
        string[] expected =
        [
            "step 10/100 10% | epoch 0.10 | loss 0.6931 | accuracy 0.500 | 4.0 samples/s | ETA ?",
            "step 20/100 20% | epoch 0.20 | loss 0.5000 | 4.0 samples/s | ETA 0:02:40",
            "eval at step 20: loss 0.7000 | rewards/accuracies 0.9000",
            "checkpoint written: out/checkpoint-20",
            "step 100/100 100% | epoch 1.00 | loss 0.2500 | ETA 0:00:00",
        ];
        Assert.Equal(string.Join("\n", expected) + "\n", output.ToString());
    }

    [Fact]
    public void A_terminal_gets_one_status_line_redrawn_with_events_above_it()
    {
        var clock = new ManualClock(Start);
        var output = new StringWriter { NewLine = "\n" };
        var progress = new ProgressReporter(4, output, redrawInPlace: true, clock, columns: () => 200);
        progress.Log(1, 0.25, new Dictionary<string, double> { ["loss"] = 1 });
        clock.Advance(TimeSpan.FromSeconds(1));
        progress.Log(2, 0.5, new Dictionary<string, double> { ["loss"] = 0.5 });
        progress.Event("checkpoint written");
        clock.Advance(TimeSpan.FromSeconds(2));
        progress.Log(4, 1, new Dictionary<string, double> { ["loss"] = 0.25 });

        const string first = "[#####---------------] step 1/4 25% | epoch 0.25 | loss 1.0000 | ETA ?";
        const string second = "[##########----------] step 2/4 50% | epoch 0.50 | loss 0.5000 | ETA 0:00:02";
        const string last = "[####################] step 4/4 100% | epoch 1.00 | loss 0.2500 | ETA 0:00:00";
        string expected =
            "\r" + first
            + "\r" + second
            + "\r" + "checkpoint written".PadRight(second.Length) + "\n" // the event overwrites the status line, then ends it
            + "\r" + second                                              // and the status line is drawn again below
            + "\r" + last + "\n";                                        // the last step ends its line
        Assert.Equal(expected, output.ToString());
    }

    [Fact]
    public void A_status_line_wider_than_the_terminal_is_cut_and_ended_on_dispose()
    {
        var output = new StringWriter { NewLine = "\n" };
        using (var progress = new ProgressReporter(10, output, redrawInPlace: true, new ManualClock(Start), columns: () => 30))
        {
            progress.Log(1, 0.1, new Dictionary<string, double> { ["loss"] = 2 });
        }
        // One column short of the width: a line filling the last column wraps on some terminals.
        Assert.Equal("\r[##------------------] step 1\n", output.ToString());
    }
}
