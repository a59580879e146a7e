using System.Diagnostics;
using NativeVlm.Demo;
using NativeVlm.Training;
using NativeVlm.Training.Metrics;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Demo;

/// <summary>The embedded default end to end on the CPU: the issue's bar of held-out reward accuracy ≥ 0.9, in bounded time.</summary>
public sealed class DemoRunTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Dpo_on_the_demo_tells_the_right_colour_from_a_wrong_one_on_held_out_pairs()
    {
        var clock = Stopwatch.StartNew();
        DemoWorkspace workspace = await DemoRun.PrepareAsync(_dir.Root, seed: 0);
        TrainingArguments args = DemoRun.Arguments(workspace, seed: 0);
        var history = new MetricsHistory();

        DemoOutcome outcome = DemoRun.Train(workspace, args, history);

        foreach (LoggedMetrics entry in history.Entries)
        {
            output.WriteLine($"step {entry.Step}: {string.Join(", ", entry.Metrics.Select(m => $"{m.Key} {m.Value:F4}"))}");
        }
        output.WriteLine($"{outcome.Steps} steps in {clock.Elapsed.TotalSeconds:F0} s; held-out accuracy {outcome.HeldOutAccuracy:F3}");
        Assert.True(outcome.HeldOutAccuracy >= 0.9, $"held-out rewards/accuracies {outcome.HeldOutAccuracy:F3}");
        Assert.True(File.Exists(Path.Combine(workspace.Output, "adapter_model.safetensors")));
        // 128 steps took 6.3 minutes on a shared 2-core build machine; the bound catches a run gone slow, not a tuned speed.
        Assert.True(clock.Elapsed < TimeSpan.FromMinutes(10), $"the demo took {clock.Elapsed.TotalMinutes:F1} minutes");
    }
}
