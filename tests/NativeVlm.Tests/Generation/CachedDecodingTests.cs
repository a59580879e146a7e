using NativeVlm.Batches;
using NativeVlm.Generation;
using NativeVlm.Models;
using NativeVlm.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Generation;

/// <summary>
/// The KV cache as a property: decoding token by token against the cache gives the logits of one
/// uncached forward over the same tokens, for prompts and continuations no fixture fixed, on the fixture
/// models and on the demo model (another shape: 64-pixel frames, 4 query / 2 key-value heads), and a
/// left-padded batch gives each row the logits of that row alone.
/// </summary>
public class CachedDecodingTests(ITestOutputHelper output)
{
    /// <summary>
    /// Both sides are this engine's fp32 on the same machine; they differ only in matmul shapes and so
    /// in summation order. transformers' own cached-vs-uncached difference on these models is 1.6e-6
    /// (Llama) and 5.3e-6 (Qwen3, larger logits) per the generate fixtures' READMEs; 2e-5 allows a few times that.
    /// </summary>
    private const double SameEngineAtol = 2e-5;

    [Theory]
    [Trait("Category", Fixtures.Category)]
    [MemberData(nameof(GenerateFixture.Names), MemberType = typeof(GenerateFixture))]
    public void Cached_logits_equal_the_uncached_forward_for_random_continuations(string name)
    {
        var fixture = new GenerateFixture(name);
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(fixture.ModelDir, ctx);
        var random = new Random(1234);
        for (int i = 0; i < fixture.PromptCount; i++)
        {
            Idefics3Inputs prompt = fixture.ReadInputs($"prompt.{i}.");
            int[] sequence = [.. prompt.InputIds, .. RandomTextTokens(random, model.Config, fixture.MaxNewTokens)];

            double error = MaxCachedError(model, prompt, sequence);

            output.WriteLine($"{name} prompt {i}: max abs cached − uncached {error:E2}");
            Assert.True(error <= SameEngineAtol, $"prompt {i}: {error:E3} > {SameEngineAtol}");
        }
    }

    [Fact]
    public void Cached_logits_equal_the_uncached_forward_on_the_demo_model()
    {
        using var dir = new TempDirectory();
        using DemoModel demo = DemoModel.Create(dir);
        GenerationPrompt prompt = demo.Prompts.FromImageFiles([demo.WriteImage(seed: 3)], "What colour is the shape?");
        int[] sequence = [.. prompt.InputIds, .. RandomTextTokens(new Random(5), demo.Model.Config, 16)];

        double error = MaxCachedError(demo.Model, prompt.ToInputs(), sequence);

        output.WriteLine($"demo: max abs cached − uncached {error:E2}");
        Assert.True(error <= SameEngineAtol, $"{error:E3} > {SameEngineAtol}");
    }

    [Fact]
    public void A_left_padded_row_gets_the_logits_of_the_row_alone()
    {
        using var dir = new TempDirectory();
        using DemoModel demo = DemoModel.Create(dir);
        GenerationPrompt longer = demo.Prompts.FromImageFiles([demo.WriteImage(seed: 3)], "What colour is the shape in this picture?");
        GenerationPrompt shorter = demo.Prompts.FromImageFiles([demo.WriteImage(seed: 4)], "Colour?");
        Idefics3Inputs batch = LeftPadded([longer.ToInputs(), shorter.ToInputs()], demo.Processor.PadTokenId);
        var settings = new GenerationSettings(8, DoSample: false, GenerationSettings.DefaultTemperature, GenerationSettings.DefaultTopK,
            GenerationSettings.DefaultTopP, Seed: 0, EosTokenIds: [], demo.Processor.PadTokenId);

        GenerationResult result = Generator.Generate(demo.Model, batch, settings, keepStepLogits: true);

        int vocab = demo.Model.Config.Text.VocabSize;
        foreach ((GenerationPrompt row, int b) in new[] { (longer, 0), (shorter, 1) })
        {
            // The row alone, fed the tokens the batch chose for it, must score every step as the batch did.
            int[] sequence = [.. row.InputIds, .. result.Steps.Select(step => step[b]).SkipLast(1)];
            float[][] alone = CachedDecoding.TeacherForcedLogits(demo.Model, row.ToInputs(), sequence);
            double error = alone.Select((logits, s) => MaxAbs(logits, result.StepLogits![s].AsSpan(b * vocab, vocab))).Max();
            output.WriteLine($"row {b} ({row.InputIds.Length} tokens): max abs batch − alone {error:E2}");
            Assert.True(error <= SameEngineAtol, $"row {b}: {error:E3} > {SameEngineAtol}");
        }
        Assert.NotEqual(longer.InputIds.Length, shorter.InputIds.Length);
    }

    [Fact]
    public void Each_step_frees_its_tensors_so_memory_stays_flat_over_a_long_generation()
    {
        using var dir = new TempDirectory();
        using DemoModel demo = DemoModel.Create(dir);
        GenerationPrompt prompt = demo.Prompts.FromImageFiles([demo.WriteImage(seed: 3)], "Describe the picture.");
        var settings = new GenerationSettings(64, DoSample: true, GenerationSettings.DefaultTemperature, GenerationSettings.DefaultTopK,
            GenerationSettings.DefaultTopP, Seed: 1, EosTokenIds: [], demo.Processor.PadTokenId);
        var liveBytes = new List<long>();

        Generator.Generate(demo.Model, prompt.ToInputs(), settings, onStep: _ => liveBytes.Add(demo.Context.Memory.LiveBytes));

        // Between steps only the weights and the preallocated cache are alive: the same bytes after every step.
        Assert.Equal(settings.MaxNewTokens, liveBytes.Count);
        Assert.All(liveBytes, bytes => Assert.Equal(liveBytes[0], bytes));
    }

    private static double MaxCachedError(Idefics3Model model, Idefics3Inputs prompt, int[] sequence)
    {
        float[][] cached = CachedDecoding.TeacherForcedLogits(model, prompt, sequence);
        float[][] full = CachedDecoding.FullForwardLogits(model, prompt, sequence);
        return cached.Select((logits, i) => MaxAbs(logits, full[prompt.SeqLen - 1 + i])).Max();
    }

    private static double MaxAbs(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        }
        return max;
    }

    /// <summary>Tokens below the image token id (text and specials, never &lt;image&gt;, which would need features).</summary>
    private static int[] RandomTextTokens(Random random, Idefics3Config config, int count) =>
        Enumerable.Range(0, count).Select(_ => random.Next(config.ImageTokenId)).ToArray();

    /// <summary>Rows of one frame each, padded on the left with the pad token as transformers' processor pads for generate.</summary>
    private static Idefics3Inputs LeftPadded(IReadOnlyList<Idefics3Inputs> rows, int padTokenId)
    {
        int seq = rows.Max(r => r.SeqLen);
        var ids = new int[rows.Count * seq];
        var mask = new byte[rows.Count * seq];
        Array.Fill(ids, padTokenId);
        for (int b = 0; b < rows.Count; b++)
        {
            Assert.True(rows[b].PixelShape![1] == 1 && rows[b].PixelShape!.Skip(2).SequenceEqual(rows[0].PixelShape!.Skip(2)), "rows need one frame of one size");
            rows[b].InputIds.CopyTo(ids, b * seq + seq - rows[b].SeqLen);
            mask.AsSpan(b * seq + seq - rows[b].SeqLen, rows[b].SeqLen).Fill(1);
        }
        int[] pixelShape = [rows.Count, .. rows[0].PixelShape![1..]];
        return new Idefics3Inputs(rows.Count, seq, ids, mask,
            rows.SelectMany(r => r.PixelValues!).ToArray(), pixelShape, rows.SelectMany(r => r.PixelAttentionMask!).ToArray(), null, null);
    }
}
