using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Training;
using NativeVlm.Training.Dpo;

namespace NativeVlm.Demo;

/// <summary>Where the demo puts what it makes: the snapshot, the dataset and the training output, under one folder.</summary>
public sealed record DemoWorkspace(string Directory)
{
    public string Snapshot => Path.Combine(Directory, "model");

    public string Dataset => Path.Combine(Directory, "dataset");

    /// <summary>output_dir of the training run: the adapter, metrics.jsonl, the TensorBoard events, checkpoints.</summary>
    public string Output => Path.Combine(Directory, "output");
}

/// <summary>The held-out metrics after training (eval_-prefixed TRL names) and the steps taken.</summary>
public sealed record DemoOutcome(long Steps, IReadOnlyDictionary<string, double> EvalMetrics)
{
    public double HeldOutAccuracy => EvalMetrics["eval_rewards/accuracies"];
}

/// <summary>
/// The embedded default run: a tiny SmolVLM-shaped snapshot (<see cref="DemoSnapshot"/>) and coloured-shape
/// preference pairs (<see cref="DemoDataset"/>) made in a work folder, then DPO with LoRA on every
/// Linear module, vision tower included, on the CPU, evaluated on the test split.
/// </summary>
public static class DemoRun
{
    /// <summary>The work folder when none is given, relative to the current directory.</summary>
    public const string DefaultDirectory = "nativevlm-demo";

    public const int TrainPairs = 512, TestPairs = 64;

    /// <summary>Writes the snapshot and the dataset into <paramref name="directory"/>; both are functions of <paramref name="seed"/>.</summary>
    public static async Task<DemoWorkspace> PrepareAsync(string directory, int seed, CancellationToken cancellationToken = default)
    {
        var workspace = new DemoWorkspace(directory);
        DemoSnapshot.Create(workspace.Snapshot, seed);
        await DemoDataset.CreateAsync(workspace.Dataset, TrainPairs, TestPairs, seed, cancellationToken).ConfigureAwait(false);
        return workspace;
    }

    /// <summary>The demo's training settings (TRL's names): sigmoid DPO, LoRA r 8 on all-linear, cosine schedule with warmup.</summary>
    public static TrainingArguments Arguments(DemoWorkspace workspace, int seed) => new()
    {
        OutputDir = workspace.Output,
        PerDeviceTrainBatchSize = 8,
        PerDeviceEvalBatchSize = 16,
        LearningRate = 2e-3,
        NumTrainEpochs = 2,
        LrSchedulerType = "cosine",
        WarmupRatio = 0.1,
        LoggingSteps = 8,
        EvalSteps = 32,
        SaveSteps = 1_000_000,
        Seed = seed,
        Beta = 0.1,
        LoraR = 8,
        LoraAlpha = 16,
        LoraTargetModules = [TargetModules.AllLinear],
        Device = "cpu",
    };

    /// <summary>
    /// Trains the workspace's snapshot on its train split with <paramref name="args"/>, reporting to
    /// <paramref name="log"/>, writes the adapter into output_dir and evaluates on the test split.
    /// </summary>
    public static DemoOutcome Train(DemoWorkspace workspace, TrainingArguments args, ITrainingLog log)
    {
        VlmProcessor processor = VlmProcessor.Load(workspace.Snapshot);
        var builder = new SampleBuilder(processor, new SampleLimits(args.MaxLength, args.MaxPromptLength, args.MaxCompletionLength));
        var collator = new BatchCollator(processor.PadTokenId);
        SampleList<DpoSample, DpoBatch> Read(string split) =>
            new(ReadAll(TrainingSamples.ReadDpoAsync(builder, [workspace.Dataset], split, BadRowPolicy.Strict, new DatasetSummary())), collator.CollateDpo);

        using Context ctx = Context.Create(args.Device);
        using Idefics3Model model = Idefics3Model.Load(workspace.Snapshot, ctx);
        using LoraAdapterSet adapters = LoraAdapterSet.Create(model.Linears,
            LoraConfig.Create(Targets(args.LoraTargetModules), args.LoraR, args.LoraAlpha, args.LoraDropout, args.UseDora,
                baseModelNameOrPath: workspace.Snapshot),
            args.Seed);
        var loss = new DpoLoss(new DpoLossOptions
        {
            LossTypes = args.LossType.Select(DpoLossTypes.Parse).ToList(),
            LossWeights = args.LossWeights,
            Beta = args.Beta,
            LabelSmoothing = args.LabelSmoothing,
            RpoAlpha = args.RpoAlpha,
        });
        var trainer = new Trainer<DpoBatch>(args, TrainedWeights.FromAdapters(adapters),
            new DpoTrainingObjective(new DpoObjective(model, adapters, loss), adapters), Read("train"), Read("test"), log);
        TrainingOutcome outcome = trainer.Train();
        return new DemoOutcome(outcome.GlobalStep, trainer.Evaluate());
    }

    /// <summary>PEFT's target_modules from the argument: "all-linear" alone is the string form, anything else a list of names.</summary>
    private static TargetModules Targets(IReadOnlyList<string> modules) =>
        modules is [TargetModules.AllLinear] ? TargetModules.FromPattern(TargetModules.AllLinear) : TargetModules.FromNames(modules);

    /// <summary>Reads on the thread pool and waits: the trainer's loop is synchronous.</summary>
    private static List<T> ReadAll<T>(IAsyncEnumerable<T> items) => Task.Run(async () =>
    {
        var list = new List<T>();
        await foreach (T item in items.ConfigureAwait(false))
        {
            list.Add(item);
        }
        return list;
    }).GetAwaiter().GetResult();
}
