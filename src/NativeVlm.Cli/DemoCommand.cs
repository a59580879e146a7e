using System.Diagnostics;
using System.Globalization;
using CommandLine;
using CommandLine.Text;
using NativeVlm.Demo;
using NativeVlm.Training;
using NativeVlm.Training.Metrics;

namespace NativeVlm.Cli;

[Verb("demo", HelpText = "DPO with no download: makes a tiny SmolVLM-shaped model and coloured-shape preference pairs, trains LoRA adapters " +
    "to name the shape's colour, and checks that held-out reward accuracy reaches 0.9.")]
public sealed class DemoOptions
{
    [Usage(ApplicationAlias = "nativevlm")]
    public static IEnumerable<Example> Examples =>
    [
        UsageExample.Of("The default run on the CPU", new DemoOptions()),
        UsageExample.Of("On the first GPU, in another work folder", new DemoOptions { Device = "cuda", OutputDir = "/tmp/demo" }),
    ];

    [Option("output_dir", Default = DemoRun.DefaultDirectory, HelpText = "Work folder: model/, dataset/ and output/ (adapter, metrics.jsonl, runs/, plot).")]
    public string OutputDir { get; set; } = DemoRun.DefaultDirectory;

    [Option("seed", Default = 0, HelpText = "Seed of the weights, the data and the training.")]
    public int Seed { get; set; }

    [Option("device", Default = "cpu", HelpText = DeviceOption.Help)]
    public string Device { get; set; } = "cpu";

    [Option("bf16", HelpText = DeviceOption.Bf16Help)]
    public bool? Bf16 { get; set; }

    [Option("max_steps", Default = DemoRun.DefaultSteps, HelpText = "Optimizer steps (fewer may end below the accuracy bar).")]
    public long MaxSteps { get; set; } = DemoRun.DefaultSteps;
}

/// <summary>
/// nativevlm demo: the embedded default run (<see cref="DemoRun"/>) with the same sinks as
/// nativevlm train (progress, metrics.jsonl, TensorBoard), then the curves' plot and the summary of
/// where everything went. Exits 0 when held-out reward accuracy reaches <see cref="DemoRun.AccuracyBar"/>,
/// 1 with a one-line reason when it does not.
/// </summary>
public static class DemoCommand
{
    public static int Run(DemoOptions options)
    {
        var clock = Stopwatch.StartNew();
        var workspace = new DemoWorkspace(options.OutputDir);
        TrainingArguments args = DemoRun.Arguments(workspace, options.Seed, options.MaxSteps);
        args.Device = options.Device;
        args.Bf16 = options.Bf16 == true;
        args.Validate(); // A bad --max_steps is reported before any file is written.

        DemoRun.PrepareAsync(workspace.Directory, options.Seed).GetAwaiter().GetResult();
        Console.WriteLine($"demo: model in {Path.GetFullPath(workspace.Snapshot)}, {DemoRun.TrainPairs} train and " +
            $"{DemoRun.TestPairs} held-out pairs in {Path.GetFullPath(workspace.Dataset)}");
        Console.WriteLine($"demo: DPO, LoRA r {args.LoraR} on {string.Join(", ", args.LoraTargetModules)}, {args.MaxSteps} steps on {args.Device}" +
            (args.Bf16 ? " in bf16 mixed precision (bf16 math and activations)" : ""));

        Directory.CreateDirectory(args.OutputDir);
        var history = new MetricsHistory();
        var jsonl = new MetricsJsonlWriter(args.OutputDir);
        var tensorBoard = new TensorBoardWriter(args.OutputDir);
        DemoOutcome outcome;
        // The console last, so that a step's line comes after the files that hold it.
        using (var log = new CompositeTrainingLog(jsonl, tensorBoard, history, new ProgressReporter(args.MaxSteps)))
        {
            outcome = DemoRun.Train(workspace, args, log);
        }

        string plot = Path.Combine(args.OutputDir, TrainingPlot.DefaultFileName);
        bool plotted = TrainingPlot.Save(history, plot);
        Console.WriteLine(TrainingSummary.Format(history, outcome.Steps, history.Entries[^1].Epoch, clock.Elapsed, new TrainingOutputs(
            Path.GetFullPath(args.OutputDir), Path.GetFullPath(jsonl.FilePath), Path.GetFullPath(tensorBoard.LogDirectory),
            plotted ? Path.GetFullPath(plot) : null)));

        string accuracy = outcome.HeldOutAccuracy.ToString("F3", CultureInfo.InvariantCulture);
        if (outcome.HeldOutAccuracy >= DemoRun.AccuracyBar)
        {
            Console.WriteLine($"demo: held-out reward accuracy {accuracy} ≥ {DemoRun.AccuracyBar}: the adapters tell the right colour from a wrong one");
            return 0;
        }
        Console.Error.WriteLine($"demo: held-out reward accuracy {accuracy} is below the bar of {DemoRun.AccuracyBar} after {outcome.Steps} steps");
        return 1;
    }
}
