using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Training.Dpo;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Training.Dpo;

/// <summary>
/// <see cref="DpoObjective"/> on a small random Idefics3 model with LoRA on the vision tower and the
/// decoder: images encoded once per pair equal one encoding per row, and one batch of 4 pairs equals 4
/// micro-batches of 1 accumulated with loss scale ¼ — log-probs, losses and every adapter gradient.
/// </summary>
public class DpoObjectiveTests(ITestOutputHelper output)
{
    private const int ImageToken = 99, Vocab = 100;

    // vision 16×16 images in 4×4 patches → 16 patches, pixel-shuffled by 2 → 4 image tokens per frame.
    private const string Config = """
        {
          "scale_factor": 2, "image_token_id": 99, "tie_word_embeddings": false,
          "vision_config": { "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "image_size": 16, "patch_size": 4 },
          "text_config": { "model_type": "llama", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "pad_token_id": 0 }
        }
        """;

    private sealed class Setup : IDisposable
    {
        public Setup()
        {
            Context = Context.Create(DeviceKind.Cpu);
            Model = Idefics3Model.Load(Weights.Random(Context, seed: 11), Idefics3Config.Parse(Config, "config.json"));
            // init_lora_weights=False: lora_B random too, so that every adapter tensor has a gradient.
            Adapters = LoraAdapterSet.Create(Model.Linears,
                LoraConfig.Create(TargetModules.FromNames("q_proj", "v_proj", "fc1", "down_proj"), r: 4, loraAlpha: 8, initLoraWeights: LoraInit.Off), seed: 5);
        }

        public Context Context { get; }

        public Idefics3Model Model { get; }

        public LoraAdapterSet Adapters { get; }

        public DpoObjective Objective(DpoLossOptions options) => new(Model, Adapters, new DpoLoss(options));

        public void ZeroGrad()
        {
            foreach (Tensor p in Adapters.Parameters)
            {
                p.Grad?.Dispose();
                p.Grad = null;
            }
        }

        public Dictionary<string, float[]> Grads() =>
            Adapters.NamedParameters.ToDictionary(p => p.Key, p => p.Tensor.Grad?.ToFloatArray() ?? throw new InvalidOperationException($"{p.Key} has no gradient"));

        public void Dispose()
        {
            Adapters.Dispose();
            Model.Dispose();
            Context.Dispose();
        }
    }

    /// <summary>Pairs with 1, 2, 0 (text only) and 1 frames; prompts, completions and pixels random.</summary>
    private static List<DpoSample> Samples(int count, int seed)
    {
        var rng = new Random(seed);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, ImageToken)).ToArray();
        int[] frameCounts = [1, 2, 0, 1];
        var samples = new List<DpoSample>();
        for (int i = 0; i < count; i++)
        {
            int frames = frameCounts[i % frameCounts.Length];
            int[] prompt = [1, .. Tokens(rng.Next(1, 4)), .. Enumerable.Repeat(ImageToken, frames * 4), .. Tokens(rng.Next(2, 5))];
            SampleImages? images = frames == 0 ? null : new SampleImages(
                Enumerable.Range(0, frames * 3 * 16 * 16).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(),
                Enumerable.Repeat((byte)1, frames * 16 * 16).ToArray(), frames, 16, 16, [], []);
            samples.Add(new DpoSample(new RowLocation("random", i), prompt, [.. Tokens(rng.Next(2, 6)), 2], [.. Tokens(rng.Next(2, 8)), 2], images));
        }
        return samples;
    }

    [Fact]
    public void Images_encoded_once_per_pair_give_the_log_probs_and_gradients_of_one_encoding_per_row()
    {
        using var s = new Setup();
        DpoBatch batch = new BatchCollator(0).CollateDpo(Samples(3, seed: 1));
        var options = new DpoLossOptions { LossTypes = [DpoLossType.Sigmoid, DpoLossType.Sft], LossWeights = [1, 0.5] };

        DpoObjective once = s.Objective(options);
        DpoStepResult shared = once.Step(batch, lossScale: 1);
        Dictionary<string, float[]> sharedGrads = s.Grads();
        s.ZeroGrad();
        DpoObjective perRow = s.Objective(options);
        perRow.EncodeImagesOncePerPair = false;
        DpoStepResult separate = perRow.Step(batch, lossScale: 1);
        Dictionary<string, float[]> separateGrads = s.Grads();

        // The vision tower runs on 2 (instead of 4) images' frames: the same per-frame math, so log-probs
        // agree to float32 rounding of sums of ~10 terms of magnitude ~5 (1e-5 is ~20 ulps of them).
        AssertClose("policy chosen", separate.PolicyChosenLogProbs, shared.PolicyChosenLogProbs, 1e-5);
        AssertClose("policy rejected", separate.PolicyRejectedLogProbs, shared.PolicyRejectedLogProbs, 1e-5);
        AssertClose("reference chosen", separate.Reference.Chosen, shared.Reference.Chosen, 1e-5);
        AssertClose("reference rejected", separate.Reference.Rejected, shared.Reference.Rejected, 1e-5);
        Assert.Equal(separate.Loss, shared.Loss, 6);
        AssertSameGradients(separateGrads, sharedGrads);
        // The vision tower's adapters did get gradients through the shared features.
        Assert.Contains(sharedGrads, g => g.Key.Contains("vision_model") && g.Value.Any(v => v != 0));
    }

    [Fact]
    public void A_batch_of_4_equals_4_micro_batches_of_1_with_accumulation()
    {
        using var s = new Setup();
        List<DpoSample> samples = Samples(4, seed: 2);
        var collator = new BatchCollator(0);
        var options = new DpoLossOptions { LossTypes = [DpoLossType.Sigmoid], Beta = 0.5 };

        DpoStepResult whole = s.Objective(options).Step(collator.CollateDpo(samples), lossScale: 1);
        Dictionary<string, float[]> wholeGrads = s.Grads();
        s.ZeroGrad();
        DpoObjective objective = s.Objective(options);
        List<DpoStepResult> micro = samples.Select(sample => objective.Step(collator.CollateDpo([sample]), lossScale: 0.25)).ToList();
        Dictionary<string, float[]> accumulated = s.Grads();

        // Padding to the batch's longest row changes nothing a real token attends to: same log-probs to rounding.
        AssertClose("policy chosen", whole.PolicyChosenLogProbs, micro.SelectMany(m => m.PolicyChosenLogProbs).ToArray(), 1e-5);
        AssertClose("policy rejected", whole.PolicyRejectedLogProbs, micro.SelectMany(m => m.PolicyRejectedLogProbs).ToArray(), 1e-5);
        Assert.Equal(whole.Loss, micro.Average(m => m.Loss), 6);
        AssertSameGradients(wholeGrads, accumulated);
    }

    [Fact]
    public void Precomputed_reference_log_probs_give_the_same_step_and_metrics_use_trl_names()
    {
        using var s = new Setup();
        DpoBatch batch = new BatchCollator(0).CollateDpo(Samples(2, seed: 3));
        var options = new DpoLossOptions { LossTypes = [DpoLossType.Ipo] };
        DpoObjective objective = s.Objective(options);
        DpoReferenceLogProbs reference = objective.ReferenceLogProbs(batch);
        DpoStepResult computed = objective.Step(batch, lossScale: 1);
        Dictionary<string, float[]> computedGrads = s.Grads();
        s.ZeroGrad();
        DpoStepResult given = new DpoObjective(s.Model, adapters: null, new DpoLoss(options)).Step(batch, lossScale: 1, reference);

        Assert.Equal(computed.Loss, given.Loss);
        Assert.Equal(computedGrads, s.Grads());
        string[] names = ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
            "logps/rejected", "logits/chosen", "logits/rejected", "nll_loss", "num_tokens", "tokens/chosen", "tokens/rejected"];
        Assert.Equal(names.Order(), computed.Metrics.Keys.Order());
        Assert.All(computed.Metrics, m => Assert.True(double.IsFinite(m.Value), m.Key));
        // ipo: the loss sees length-averaged log-probs, and so do TRL's logged logps.
        Assert.Equal(computed.PolicyChosenLogProbs.Select((v, i) => v / computed.CompletionTokens[i]).Average(), computed.Metrics["logps/chosen"], 12);
    }

    private void AssertClose(string name, double[] expected, double[] actual, double atol)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        output.WriteLine($"{name}: max abs difference {worst:E2}");
        Assert.True(worst <= atol, $"{name}: max abs difference {worst:E3} > {atol:E0}");
    }

    /// <summary>
    /// Gradients summed in another order (two rows' contributions into one feature tensor, or four
    /// micro-batches into .Grad) differ by float32 rounding: a few ulps of the largest term per tensor,
    /// so the bound is relative to the tensor's largest gradient: 1e-4 of it. Most tensors differ by ≤ 5e-7 of
    /// it; the random model's vision q_proj gradients (~1e-12, nearly uniform attention) are sums of terms far
    /// larger than themselves and cancel, which measured 1.7e-5. Relative only: these gradients are tiny
    /// (1e-13 to 1e-6), and an absolute floor would pass them unchecked.
    /// </summary>
    private void AssertSameGradients(Dictionary<string, float[]> expected, Dictionary<string, float[]> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach ((string key, float[] e) in expected)
        {
            float[] a = actual[key];
            double scale = e.Max(v => Math.Abs(v));
            Assert.True(scale > 0, $"{key}: no gradient");
            double worst = e.Zip(a, (x, y) => Math.Abs(x - y)).Max();
            output.WriteLine($"{key}: max |g| {scale:E2}, max difference {worst:E2}");
            Assert.True(worst <= 1e-4 * scale, $"{key}: max difference {worst:E3} for max |g| {scale:E3}");
        }
    }
}
