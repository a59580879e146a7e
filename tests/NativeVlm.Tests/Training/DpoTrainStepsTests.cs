using System.Text.Json.Nodes;
using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Checks;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Training;
using NativeVlm.Training.Dpo;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Training;

/// <summary>
/// dpo-train-steps through the Trainer: TRL's sigmoid DPO on tiny-idefics3 + a PEFT LoRA adapter, 3
/// optimizer steps over 6 micro-batches (accumulation 2, cosine warmup, clipping, AdamW) against the HF
/// Trainer's run — every micro-batch's loss, rewards and policy log-probs, every step's loss, grad norm,
/// clip coefficient and learning rate, the final adapter (every tensor), the AdamW state of the
/// parameters the fixture recorded, and the final adapter's log-probs of each pair.
/// </summary>
[Trait("Category", Fixtures.Category)]
public sealed class DpoTrainStepsTests(ITestOutputHelper output)
{
    private const string Name = "dpo-train-steps";

    // tolerance.json: fp32 and fp64 runs differ by ≤ 1.8e-5 on summed log-probs (up to 165 in magnitude),
    // ≤ 1.8e-6 on losses, rewards and grad norms. An independent fp32 implementation sums in other orders,
    // hence the README's atol 1e-4 / rtol 1e-4 on everything logged (the 1e-4).
    private const double LogAtol = 1e-4, LogRtol = 1e-4;

    // Final weights: fp32 vs fp64 differ by ≤ 3e-7 (tolerance.json final_adapter.*). Adam normalises each
    // coordinate, so every weight moves by ~lr (5e-3) per step whatever its gradient's size; the README's
    // atol 1e-5 (tighter than the 1e-4) still leaves 30× the fp32 spread and catches any wrong step.
    private const double WeightAtol = 1e-5;

    // AdamW moments: exp_avg is ≤ 1.3e-2 with fp32/fp64 spread ≤ 8e-9, exp_avg_sq ≤ 7e-6 with spread ≤ 6e-12
    // (tolerance.json). An absolute 1e-4 would pass an all-zero exp_avg_sq, so these are relative to the
    // moment's size: rtol 1e-3 of each element plus an atol of 1e-6 of the tensor's largest magnitude
    // (elements near 0 carry the gradients' rounding, amplified by the clipping coefficient).
    private const double MomentRtol = 1e-3, MomentAtolOfMax = 1e-6;

    [Fact]
    public void Trainer_reproduces_the_hf_trainer_dpo_run()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path("tiny-idefics3"), ctx);
        using LoraAdapterSet adapters = LoraAdapterSet.Load(model.Linears, Fixtures.Path(Name));
        JsonObject train = JsonNode.Parse(File.ReadAllText(Fixtures.Path(Name, "train.json")))!.AsObject();
        TrainingArguments args = FixtureArguments.Read(Fixtures.Path(Name, "train.json"));
        JsonObject hyper = train["hyperparameters"]!.AsObject();
        args.Beta = hyper["beta"]!.GetValue<double>();
        args.LossType = [hyper["loss_type"]!.GetValue<string>()];
        args.LabelSmoothing = hyper["label_smoothing"]!.GetValue<double>();
        // The adapter comes from the fixture's files; the arguments only need to say that adapters are trained.
        args.LoraTargetModules = train["adapter"]!["lora_config"]!["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).ToList();
        args.SaveSteps = args.MaxSteps;   // one checkpoint, after the last step: it holds the optimizer state
        using var outputDir = new TemporaryDirectory();
        args.OutputDir = outputDir.Path;

        using SafeTensorsReader log = SafeTensorsReader.Open(Fixtures.Path(Name, "log.safetensors"));
        float[] microLoss = log.ReadFloat32("microbatch.loss");
        string batchesPath = Fixtures.Path(Name, "microbatches.safetensors");
        // The micro-batches in the order the run consumed them (train.json's micro_batch_pair_order).
        List<DpoBatch> batches = Enumerable.Range(0, microLoss.Length).Select(i => PreferenceBatchFile.Read(batchesPath, $"microbatch.{i}.")).ToList();
        var data = new RecordedBatches<DpoBatch>(batches, args.PerDeviceTrainBatchSize);

        var dpo = new DpoObjective(model, adapters, new DpoLoss(new DpoLossOptions
        {
            LossTypes = args.LossType.Select(DpoLossTypes.Parse).ToList(),
            Beta = args.Beta,
            LabelSmoothing = args.LabelSmoothing,
        }));
        var objective = new RecordingObjective(new DpoTrainingObjective(dpo, adapters));
        TrainedWeights weights = TrainedWeights.FromAdapters(adapters);
        var trainer = new Trainer<DpoBatch>(args, weights, objective, data, null, new RecordingLog()) { ShuffleData = false };
        var steps = new List<OptimizerStepRecord>();
        trainer.OptimizerStepped += steps.Add;
        trainer.Train();

        Assert.Equal(microLoss.Length, objective.Steps.Count);
        Close(microLoss, objective.Steps.Select(m => m["loss"]), LogAtol, LogRtol, "microbatch.loss");
        Close(log.ReadFloat32("microbatch.chosen_rewards"), objective.Steps.Select(m => m["rewards/chosen"]), LogAtol, LogRtol, "microbatch.chosen_rewards");
        Close(log.ReadFloat32("microbatch.rejected_rewards"), objective.Steps.Select(m => m["rewards/rejected"]), LogAtol, LogRtol, "microbatch.rejected_rewards");
        // One pair per micro-batch: the mean log-prob is the pair's.
        Close(log.ReadFloat32("microbatch.policy_chosen_logps"), objective.Steps.Select(m => m["logps/chosen"]), LogAtol, LogRtol, "microbatch.policy_chosen_logps");
        Close(log.ReadFloat32("microbatch.policy_rejected_logps"), objective.Steps.Select(m => m["logps/rejected"]), LogAtol, LogRtol, "microbatch.policy_rejected_logps");

        float[] stepLoss = log.ReadFloat32("step.loss");
        Assert.Equal(stepLoss.Length, steps.Count);
        Close(stepLoss, steps.Select(s => s.Loss), LogAtol, LogRtol, "step.loss");
        Close(log.ReadFloat32("step.grad_norm"), steps.Select(s => (double)s.GradNorm), LogAtol, LogRtol, "step.grad_norm");
        Close(log.ReadFloat32("step.clip_coef"), steps.Select(s => (double)s.ClipCoefficient), LogAtol, LogRtol, "step.clip_coef");
        // The schedule is exact arithmetic; 1e-9 only absorbs the fixture's f32 storage of the rate.
        Close(log.ReadFloat32("step.learning_rate"), steps.Select(s => s.LearningRate), 1e-9, 1e-6, "step.learning_rate");

        using (SafeTensorsReader expected = SafeTensorsReader.Open(Fixtures.Path(Name, "final_adapter_model.safetensors")))
        using (SafeTensorsReader written = SafeTensorsReader.Open(Path.Combine(outputDir.Path, LoraAdapterSet.WeightsFileName)))
        {
            Assert.Equal(expected.Names.Order(StringComparer.Ordinal), written.Names.Order(StringComparer.Ordinal));
            foreach (string key in expected.Names)
            {
                Assert.Equal(expected.GetInfo(key).Shape.ToArray(), written.GetInfo(key).Shape.ToArray());
                Close(expected.ReadFloat32(key), written.ReadFloat32(key).Select(v => (double)v), WeightAtol, 0, key);
            }
        }

        long adamSteps = train["log"]!["adamw_state_step"]!.GetValue<long>();
        string checkpoint = Path.Combine(outputDir.Path, TrainingCheckpoint.Prefix + args.MaxSteps);
        using (SafeTensorsReader expected = SafeTensorsReader.Open(Fixtures.Path(Name, "optimizer_state.safetensors")))
        using (SafeTensorsReader state = SafeTensorsReader.Open(Path.Combine(checkpoint, TrainingCheckpoint.OptimizerFile)))
        {
            Assert.NotEmpty(expected.Names);
            foreach (string key in expected.Names)
            {
                float[] moment = expected.ReadFloat32(key);
                double atol = MomentAtolOfMax * moment.Max(Math.Abs);
                Assert.Equal(expected.GetInfo(key).Shape.ToArray(), state.GetInfo(key).Shape.ToArray());
                Close(moment, state.ReadFloat32(key).Select(v => (double)v), atol, MomentRtol, key);
            }
            foreach (string parameter in expected.Names.Select(k => k[..k.LastIndexOf('.')]).Distinct())
            {
                Assert.Equal(adamSteps, state.ReadInt64($"{parameter}.step").Single());
            }
        }

        // The final adapter's log-probs of each pair: the micro-batch where the pair first appears.
        int[] pairOrder = train["data"]!["micro_batch_pair_order"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        float[] finalChosen = log.ReadFloat32("final.policy_chosen_logps"), finalRejected = log.ReadFloat32("final.policy_rejected_logps");
        DpoReferenceLogProbs[] final = Enumerable.Range(0, finalChosen.Length)
            .Select(pair => dpo.SequenceLogProbs(batches[Array.IndexOf(pairOrder, pair)])).ToArray();
        Close(finalChosen, final.Select(f => f.Chosen.Single()), LogAtol, LogRtol, "final.policy_chosen_logps");
        Close(finalRejected, final.Select(f => f.Rejected.Single()), LogAtol, LogRtol, "final.policy_rejected_logps");
    }

    private void Close(IReadOnlyList<float> expected, IEnumerable<double> actual, double atol, double rtol, string what)
    {
        double[] got = actual.ToArray();
        output.WriteLine($"{what}: max abs error {got.Zip(expected, (a, e) => Math.Abs(a - e)).DefaultIfEmpty().Max():E2}");
        FixtureAssert.Close(expected, got, atol, rtol, what);
    }

    /// <summary>The objective as the trainer drives it, keeping each micro-batch's metrics.</summary>
    private sealed class RecordingObjective(ITrainingObjective<DpoBatch> inner) : ITrainingObjective<DpoBatch>
    {
        public List<IReadOnlyDictionary<string, double>> Steps { get; } = [];

        public ObjectiveStep Step(DpoBatch batch, double lossScale)
        {
            ObjectiveStep step = inner.Step(batch, lossScale);
            Steps.Add(step.Metrics);
            return step;
        }

        public ObjectiveStep Evaluate(DpoBatch batch) => inner.Evaluate(batch);
    }
}
