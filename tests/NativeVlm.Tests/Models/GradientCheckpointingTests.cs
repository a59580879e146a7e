using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Training;
using NativeVlm.Training.Dpo;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Models;

/// <summary>
/// Gradient checkpointing of the vision encoder and decoder layers (<see cref="Idefics3Model.GradientCheckpointing"/>)
/// in the trainer's DPO step on a small random model with adapters, LoRA dropout on, on every Linear:
/// the recomputed layers redraw their dropout masks, so the step's gradients and the dropout generator
/// afterwards are those of a step without checkpointing, while fewer activations are live at the peak.
/// </summary>
public class GradientCheckpointingTests(ITestOutputHelper output)
{
    private const int ImageToken = 99, ImageSize = 32, ImageTokensPerFrame = 16;

    // 32×32 images in 4×4 patches → 64 patches, pixel-shuffled by 2 → 16 image tokens per frame.
    private const string Config = """
        {
          "scale_factor": 2, "image_token_id": 99, "tie_word_embeddings": false,
          "vision_config": { "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2,
                             "image_size": 32, "patch_size": 4 },
          "text_config": { "model_type": "llama", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                           "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "pad_token_id": 0 }
        }
        """;

    private const int DropoutSeed = 3;

    private sealed record StepOutcome(Dictionary<string, float[]> Gradients, ulong[] DropoutState, double Loss, long PeakBytesAboveStart);

    /// <summary>One DPO step (reference pass, policy pass, backward) of a fresh model, adapters and dropout generator, all seeded.</summary>
    private static StepOutcome DpoStep(bool checkpointing, bool useDora)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(Weights.Random(ctx, seed: 11), Idefics3Config.Parse(Config, "config.json"));
        model.GradientCheckpointing = checkpointing;
        // init_lora_weights=False: lora_B random too, so that every adapter tensor has a gradient.
        using LoraAdapterSet adapters = LoraAdapterSet.Create(model.Linears,
            LoraConfig.Create(TargetModules.FromArgument([TargetModules.AllLinear]), r: 4, loraAlpha: 8, loraDropout: 0.25,
                useDora: useDora, initLoraWeights: LoraInit.Off), seed: 5);
        adapters.Training = true;
        adapters.SeedDropout(DropoutSeed);
        DpoBatch batch = new BatchCollator(0).CollateDpo(Samples());
        var objective = new DpoObjective(model, adapters, new DpoLoss(new DpoLossOptions { LossTypes = [DpoLossType.Sigmoid] }));

        ctx.ResetPeakMemory();
        long start = ctx.Memory.LiveBytes;
        DpoStepResult result = objective.Step(batch, lossScale: 1);
        long peakAboveStart = ctx.Memory.PeakBytes - start;

        Dictionary<string, float[]> gradients = adapters.NamedParameters.ToDictionary(p => p.Key,
            p => p.Tensor.Grad?.ToFloatArray() ?? throw new InvalidOperationException($"{p.Key} has no gradient"));
        foreach (Tensor p in adapters.Parameters)
        {
            p.Grad!.Dispose();
            p.Grad = null;
        }
        return new StepOutcome(gradients, adapters.DropoutRandom.State, result.Loss, peakAboveStart);
    }

    /// <summary>Two pairs with 2 and 1 frames; prompts, completions and pixels random.</summary>
    private static List<DpoSample> Samples()
    {
        var rng = new Random(1);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, ImageToken)).ToArray();
        return new[] { 2, 1 }.Select((frames, i) =>
        {
            int[] prompt = [1, .. Tokens(5), .. Enumerable.Repeat(ImageToken, frames * ImageTokensPerFrame), .. Tokens(8)];
            var images = new SampleImages(
                Enumerable.Range(0, frames * 3 * ImageSize * ImageSize).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(),
                Enumerable.Repeat((byte)1, frames * ImageSize * ImageSize).ToArray(), frames, ImageSize, ImageSize, [], []);
            return new DpoSample(new RowLocation("random", i), prompt, [.. Tokens(12), 2], [.. Tokens(10), 2], images);
        }).ToList();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void With_lora_dropout_checkpointed_layers_give_the_gradients_and_dropout_state_of_a_step_without(bool useDora)
    {
        StepOutcome plain = DpoStep(checkpointing: false, useDora);
        StepOutcome checkpointed = DpoStep(checkpointing: true, useDora);

        // The masks were drawn (the generator moved), and the recomputes put it back where it was.
        Assert.NotEqual(new Xoshiro256(DropoutSeed).State, plain.DropoutState);
        Assert.Equal(plain.DropoutState, checkpointed.DropoutState);
        Assert.Equal(plain.Loss, checkpointed.Loss);
        // The rerun executes the same kernels on the same inputs (same masks) in the same order, and the
        // outer tape calls the layers' backwards in the same order: bit-identical on the CPU backend.
        Assert.Equal(plain.Gradients.Keys, checkpointed.Gradients.Keys);
        foreach ((string key, float[] expected) in plain.Gradients)
        {
            Assert.True(expected.Any(g => g != 0), $"{key}: no gradient");
            Assert.True(expected.AsSpan().SequenceEqual(checkpointed.Gradients[key]), $"{key}: the gradients differ with checkpointing");
        }
        // Every adapter of the vision tower is among them.
        Assert.Equal(4 * 6, plain.Gradients.Keys.Count(k => k.Contains("vision_model") && k.EndsWith("lora_A.weight", StringComparison.Ordinal)));
    }

    [Fact]
    public void Checkpointing_the_vision_and_text_layers_lowers_the_peak_of_live_bytes()
    {
        StepOutcome plain = DpoStep(checkpointing: false, useDora: false);
        StepOutcome checkpointed = DpoStep(checkpointing: true, useDora: false);

        output.WriteLine($"peak live bytes above the model: {plain.PeakBytesAboveStart:N0} without checkpointing, {checkpointed.PeakBytesAboveStart:N0} with");
        // Without it, every layer's activations (attention scores, MLP intermediates, dropout masks) live
        // until backward; with it, the layer boundaries and one layer's activations during its rerun.
        Assert.True(checkpointed.PeakBytesAboveStart < plain.PeakBytesAboveStart * 3 / 4,
            $"peak live bytes above the model: {checkpointed.PeakBytesAboveStart:N0} with checkpointing vs {plain.PeakBytesAboveStart:N0} without");
    }
}
