using NativeVlm.Training;
using NativeVlm.Training.Metrics;
using Xunit;

namespace NativeVlm.Tests.Training.Metrics;

/// <summary>metrics.jsonl: its exact lines, and what Python's json module reads back from them.</summary>
public class MetricsJsonlWriterTests
{
    private static void LogThreeSteps(ITrainingLog log)
    {
        log.Log(0, 0, new Dictionary<string, double> { ["loss"] = 0.6931471805599453, ["rewards/accuracies"] = 0, ["epoch"] = 0 });
        log.Log(10, 0.5, new Dictionary<string, double>
        {
            ["loss"] = double.NaN, ["grad_norm"] = double.PositiveInfinity, ["logps/chosen"] = double.NegativeInfinity,
            ["learning_rate"] = 5e-7, ["peak_memory_bytes"] = 3221225472,
        });
        log.Log(10, 0.5, new Dictionary<string, double> { ["eval_loss"] = 0.7, ["eval_rewards/accuracies"] = 0.9 });
    }

    [Fact]
    public void Each_call_is_one_line_step_and_epoch_first()
    {
        using var dir = new TempDirectory();
        using (var writer = new MetricsJsonlWriter(dir.Root))
        {
            Assert.Equal(dir.Path("metrics.jsonl"), writer.FilePath);
            LogThreeSteps(writer);
        }
        // The metric "epoch" is the epoch argument again (TRL logs both): written once.
        string[] expected =
        [
            """{"step":0,"epoch":0.0,"loss":0.6931471805599453,"rewards/accuracies":0.0}""",
            """{"step":10,"epoch":0.5,"loss":NaN,"grad_norm":Infinity,"logps/chosen":-Infinity,"learning_rate":5E-07,"peak_memory_bytes":3221225472.0}""",
            """{"step":10,"epoch":0.5,"eval_loss":0.7,"eval_rewards/accuracies":0.9}""",
        ];
        Assert.Equal(string.Join("\n", expected) + "\n", File.ReadAllText(dir.Path("metrics.jsonl")));
    }

    [SkippableFact]
    public void Python_json_reads_every_value_back_as_the_same_float()
    {
        Skip.IfNot(ExternalProgram.OnPath("python3"), "python3 is not installed");
        using var dir = new TempDirectory();
        using (var writer = new MetricsJsonlWriter(dir.Root))
        {
            LogThreeSteps(writer);
        }
        // repr() of a Python float is the shortest text that reads back to it, so equal text is an equal double.
        const string script = """
            import json, sys
            for line in open(sys.argv[1], encoding="utf-8"):
                print(" ".join(f"{k}={type(v).__name__}:{v!r}" for k, v in json.loads(line).items()))
            """;
        (int exitCode, string stdout, string stderr) = ExternalProgram.Run("python3", ["-c", script, dir.Path("metrics.jsonl")]);

        Assert.True(exitCode == 0, stderr);
        string[] expected =
        [
            "step=int:0 epoch=float:0.0 loss=float:0.6931471805599453 rewards/accuracies=float:0.0",
            "step=int:10 epoch=float:0.5 loss=float:nan grad_norm=float:inf logps/chosen=float:-inf learning_rate=float:5e-07 peak_memory_bytes=float:3221225472.0",
            "step=int:10 epoch=float:0.5 eval_loss=float:0.7 eval_rewards/accuracies=float:0.9",
        ];
        Assert.Equal(expected, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void A_line_is_in_the_file_at_once_and_a_resumed_run_appends()
    {
        using var dir = new TempDirectory();
        using (var first = new MetricsJsonlWriter(dir.Root))
        {
            first.Log(1, 0.1, new Dictionary<string, double> { ["loss"] = 1 });
            using var read = new StreamReader(new FileStream(first.FilePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite));
            Assert.Equal("""{"step":1,"epoch":0.1,"loss":1.0}""" + "\n", read.ReadToEnd());
        }
        using (var resumed = new MetricsJsonlWriter(dir.Root))
        {
            resumed.Log(2, 0.2, new Dictionary<string, double> { ["loss"] = 0.5 });
        }
        Assert.Equal(["""{"step":1,"epoch":0.1,"loss":1.0}""", """{"step":2,"epoch":0.2,"loss":0.5}"""], File.ReadAllLines(dir.Path("metrics.jsonl")));
    }
}
