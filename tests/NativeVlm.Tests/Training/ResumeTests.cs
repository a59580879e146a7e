using NativeVlm.Adapters;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Training;
using Xunit;

namespace NativeVlm.Tests.Training;

/// <summary>
/// Checkpoints and resume on the CPU backend: a run interrupted in the middle of an accumulation window
/// and resumed from its newest checkpoint ends with the same adapter bytes as an uninterrupted run
/// (data order, LoRA dropout masks, optimizer moments and step counts, scheduler step all restored).
/// </summary>
[Trait("Category", Fixtures.Category)]
public sealed class ResumeTests
{
    // The model and batches of sft-connector-steps; the adapter, dropout and schedule are this test's own.
    private const string Model = "tiny-qwen3-smvl";
    private const string Batches = "sft-connector-steps";

    [Fact]
    public void InterruptedMidAccumulationAndResumedEqualsUninterrupted()
    {
        using var straight = new TemporaryDirectory();
        byte[] expected = Run(straight.Path, interruptAfterMicroBatch: null, resume: false, out _);

        using var interrupted = new TemporaryDirectory();
        // Micro-batch 4 is the first of step 3's window (3 micro-batches per epoch, accumulation 2): the
        // run stops with half an accumulated gradient, which the resumed run recomputes from checkpoint-2.
        Run(interrupted.Path, interruptAfterMicroBatch: 4, resume: false, out RecordingLog firstLog);
        Assert.Contains(firstLog.Events, e => e.StartsWith("interrupted", StringComparison.Ordinal));
        Assert.False(File.Exists(Path.Combine(interrupted.Path, LoraAdapterSet.WeightsFileName)));
        byte[] resumed = Run(interrupted.Path, interruptAfterMicroBatch: null, resume: true, out RecordingLog secondLog);

        Assert.Contains(secondLog.Events, e => e.Contains("resumed from", StringComparison.Ordinal) && e.Contains("checkpoint-2", StringComparison.Ordinal));
        Assert.Equal(expected, resumed);
    }

    [Fact]
    public void CheckpointMissingAFileIsRejectedWithItsName()
    {
        using var output = new TemporaryDirectory();
        Run(output.Path, interruptAfterMicroBatch: 4, resume: false, out _);
        string checkpoint = Path.Combine(output.Path, "checkpoint-2");
        File.Delete(Path.Combine(checkpoint, TrainingCheckpoint.OptimizerFile));

        using Context ctx = Backends.Open("cpu");
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path(Model), ctx);
        (Trainer<Idefics3Inputs> trainer, LoraAdapterSet adapters) = MakeTrainer(model, output.Path, new RecordingLog(), null);
        using (adapters)
        {
            var e = Assert.Throws<FileNotFoundException>(() => trainer.Train(checkpoint));
            Assert.Contains(TrainingCheckpoint.OptimizerFile, e.Message);
            Assert.Contains(checkpoint, e.Message);
            // --resume skips it and takes the newest checkpoint that is whole.
            Assert.Equal(Path.Combine(output.Path, "checkpoint-1"), TrainingCheckpoint.NewestComplete(output.Path, TrainedWeights.FromAdapters(adapters)));
        }
    }

    private static byte[] Run(string outputDir, int? interruptAfterMicroBatch, bool resume, out RecordingLog log)
    {
        using Context ctx = Backends.Open("cpu");
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path(Model), ctx);
        log = new RecordingLog();
        using var cancel = new CancellationTokenSource();
        (Trainer<Idefics3Inputs> trainer, LoraAdapterSet adapters) = MakeTrainer(model, outputDir, log,
            interruptAfterMicroBatch == null ? null : new StopAfter(interruptAfterMicroBatch.Value, cancel));
        using (adapters)
        {
            string? from = resume ? TrainingCheckpoint.NewestComplete(outputDir, TrainedWeights.FromAdapters(adapters)) : null;
            Assert.True(!resume || from != null, "no checkpoint to resume from");
            TrainingOutcome outcome = trainer.Train(from, cancel.Token);
            Assert.Equal(interruptAfterMicroBatch != null, outcome.Interrupted);
            string final = Path.Combine(outputDir, LoraAdapterSet.WeightsFileName);
            return outcome.Interrupted ? [] : File.ReadAllBytes(final);
        }
    }

    private static (Trainer<Idefics3Inputs>, LoraAdapterSet) MakeTrainer(Idefics3Model model, string outputDir, ITrainingLog log, StopAfter? stop)
    {
        var args = new TrainingArguments
        {
            OutputDir = outputDir,
            PerDeviceTrainBatchSize = 1,
            GradientAccumulationSteps = 2,
            MaxSteps = 4,
            LearningRate = 0.01,
            LrSchedulerType = "cosine",
            WarmupSteps = 1,
            WeightDecay = 0.01,
            LoggingSteps = 1,
            SaveSteps = 1,
            Seed = 7,
            LoraDropout = 0.25,
            LoraTargetModules = ["q_proj", "v_proj", "down_proj"],
        };
        LoraConfig config = LoraConfig.Create(TargetModules.FromNames(args.LoraTargetModules), args.LoraR, args.LoraAlpha, args.LoraDropout,
            initLoraWeights: LoraInit.Gaussian);
        LoraAdapterSet adapters = LoraAdapterSet.Create(model.Linears, config, args.Seed);
        using SafeTensorsReader inputs = SafeTensorsReader.Open(Fixtures.Path(Batches, "inputs.safetensors"));
        var batches = inputs.Names.Where(n => n.EndsWith(".input_ids", StringComparison.Ordinal))
            .Select(n => Idefics3Inputs.Read(inputs, n[..^"input_ids".Length])).ToList();
        ITrainingObjective<Idefics3Inputs> objective = new SftObjective(model);
        var trainer = new Trainer<Idefics3Inputs>(args, TrainedWeights.FromAdapters(adapters),
            stop == null ? objective : stop.Wrap(objective), new RecordedBatches<Idefics3Inputs>(batches, 1), null, log);
        return (trainer, adapters);
    }

    /// <summary>Sets the cancellation after the n-th micro-batch (1-based) of this process: the test's crash.</summary>
    private sealed class StopAfter(int microBatches, CancellationTokenSource cancel)
    {
        private int _seen;

        private void Saw()
        {
            if (++_seen == microBatches)
            {
                cancel.Cancel();
            }
        }

        public ITrainingObjective<Idefics3Inputs> Wrap(ITrainingObjective<Idefics3Inputs> inner) => new Counting(this, inner);

        private sealed class Counting(StopAfter owner, ITrainingObjective<Idefics3Inputs> inner) : ITrainingObjective<Idefics3Inputs>
        {
            public ObjectiveStep Step(Idefics3Inputs batch, double lossScale)
            {
                ObjectiveStep step = inner.Step(batch, lossScale);
                owner.Saw();
                return step;
            }

            public ObjectiveStep Evaluate(Idefics3Inputs batch) => inner.Evaluate(batch);
        }
    }
}
