using NativeVlm.Autograd;
using NativeVlm.Generation;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Generation;

/// <summary>
/// Cached greedy generation against transformers' generate (the generate-greedy fixtures, Llama and
/// Qwen3 decoders): every case's new tokens and sequences exactly, every step's logits within the
/// README's tolerance, and the cached step logits against transformers' uncached forward over the same tokens.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class GenerateFixtureTests(ITestOutputHelper output)
{
    /// <summary>
    /// The READMEs' suggested atol on logits: transformers' own fp32 step logits lie within 7e-6 of a
    /// float64 computation (tolerance.json), and an independent fp32 implementation sums in other orders,
    /// so a few times more. The smallest top-1 − top-2 gap of any greedy choice is 1.5e-2, far above it,
    /// so the token ids must be exact.
    /// </summary>
    private const double LogitsAtol = 1e-4;

    [Theory]
    [MemberData(nameof(GenerateFixture.Names), MemberType = typeof(GenerateFixture))]
    public void Every_case_generates_transformers_tokens_and_step_logits(string name)
    {
        var fixture = new GenerateFixture(name);
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(fixture.ModelDir, ctx);
        using SafeTensorsReader expected = SafeTensorsReader.Open(fixture.OutputsPath);
        int vocab = model.Config.Text.VocabSize;

        foreach ((string caseName, string inputsPrefix, int eos) in fixture.Cases)
        {
            Idefics3Inputs inputs = fixture.ReadInputs(inputsPrefix);
            var settings = new GenerationSettings(fixture.MaxNewTokens, DoSample: false, GenerationSettings.DefaultTemperature,
                GenerationSettings.DefaultTopK, GenerationSettings.DefaultTopP, Seed: 0, EosTokenIds: [eos], fixture.PadTokenId);

            GenerationResult result = Generator.Generate(model, inputs, settings, keepStepLogits: true);

            long[] idsShape = expected.GetInfo($"{caseName}.generated_ids").Shape.ToArray();
            int batch = (int)idsShape[0], steps = (int)idsShape[1];
            Assert.Equal(inputs.Batch, batch);
            Assert.Equal(steps, result.Steps.Count);
            int[] expectedIds = expected.ReadInt32($"{caseName}.generated_ids");
            int[] actualIds = Enumerable.Range(0, batch).SelectMany(b => result.Steps.Select(step => step[b])).ToArray();
            Assert.Equal(expectedIds, actualIds);
            int[] sequences = Enumerable.Range(0, batch)
                .SelectMany(b => inputs.InputIds.Skip(b * inputs.SeqLen).Take(inputs.SeqLen).Concat(result.Steps.Select(step => step[b])))
                .ToArray();
            Assert.Equal(expected.ReadInt32($"{caseName}.sequences"), sequences);

            float[] expectedLogits = expected.ReadFloat32($"{caseName}.step_logits");  // (batch, steps, vocab)
            double maxError = 0;
            for (int b = 0; b < batch; b++)
            {
                for (int s = 0; s < steps; s++)
                {
                    for (int v = 0; v < vocab; v++)
                    {
                        maxError = Math.Max(maxError, Math.Abs(result.StepLogits![s][b * vocab + v] - expectedLogits[((long)b * steps + s) * vocab + v]));
                    }
                }
            }
            output.WriteLine($"{name} {caseName}: {steps} steps × {batch} rows, step logits max abs error {maxError:E2}");
            Assert.True(maxError <= LogitsAtol, $"{caseName}: step logits max abs error {maxError:E3} > {LogitsAtol}");
            Assert.All(result.Rows, row => Assert.Equal(row.TokenIds[^1] == eos ? StopReason.Eos : StopReason.MaxNewTokens, row.StopReason));
        }
    }

    [Theory]
    [MemberData(nameof(GenerateFixture.Names), MemberType = typeof(GenerateFixture))]
    public void Cached_decoding_logits_equal_transformers_full_forward_over_the_same_tokens(string name)
    {
        var fixture = new GenerateFixture(name);
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(fixture.ModelDir, ctx);
        using SafeTensorsReader expected = SafeTensorsReader.Open(fixture.OutputsPath);
        Idefics3Inputs prompt = fixture.ReadInputs($"prompt.{fixture.FullForwardPrompt}.");
        int[] fullIds = expected.ReadInt32("full_forward.input_ids");
        float[] fullLogits = expected.ReadFloat32("full_forward.logits");   // (1, length, vocab)
        int vocab = model.Config.Text.VocabSize;

        float[][] cached = CachedDecoding.TeacherForcedLogits(model, prompt, fullIds);
        float[][] uncached = CachedDecoding.FullForwardLogits(model, prompt, fullIds);

        // Position t of the full forward predicts token t + 1: the prefill gives the prompt's last position, each step the next.
        double cachedError = 0, uncachedError = 0;
        for (int position = 0; position < fullIds.Length; position++)
        {
            for (int v = 0; v < vocab; v++)
            {
                float reference = fullLogits[(long)position * vocab + v];
                uncachedError = Math.Max(uncachedError, Math.Abs(uncached[position][v] - reference));
                if (position >= prompt.SeqLen - 1)
                {
                    cachedError = Math.Max(cachedError, Math.Abs(cached[position - prompt.SeqLen + 1][v] - reference));
                }
            }
        }
        output.WriteLine($"{name}: {cached.Length} cached positions, max abs error against the full forward {cachedError:E2} " +
            $"(this engine's uncached forward: {uncachedError:E2} over {fullIds.Length} positions)");
        Assert.Equal(fullIds.Length - prompt.SeqLen + 1, cached.Length);
        Assert.True(cachedError <= LogitsAtol, $"cached logits max abs error {cachedError:E3} > {LogitsAtol}");
        Assert.True(uncachedError <= LogitsAtol, $"uncached logits max abs error {uncachedError:E3} > {LogitsAtol}");
    }
}

/// <summary>Cached decoding driven by given tokens instead of chosen ones (teacher forcing), for comparing with a full forward.</summary>
internal static class CachedDecoding
{
    /// <summary>
    /// The logits after the prefill of <paramref name="prompt"/> (batch 1) and after each later token of
    /// <paramref name="sequence"/> (which starts with the prompt's ids): [1 + extra tokens][vocab].
    /// </summary>
    public static float[][] TeacherForcedLogits(Idefics3Model model, Idefics3Inputs prompt, int[] sequence)
    {
        Assert.Equal(prompt.InputIds, sequence[..prompt.SeqLen]);
        using IDisposable noGrad = Tape.NoGrad();
        using KvCache cache = model.Text.NewCache(1, sequence.Length);
        var logits = new List<float[]>();
        using (var scope = new TensorScope())
        {
            logits.Add(model.Prefill(prompt, cache).ToFloatArray());
        }
        for (int t = prompt.SeqLen; t < sequence.Length; t++)
        {
            using var scope = new TensorScope();
            logits.Add(model.DecodeStep([sequence[t]], cache).ToFloatArray());
        }
        return [.. logits];
    }

    /// <summary>The uncached forward's logits over <paramref name="sequence"/> with the prompt's images: [length][vocab].</summary>
    public static float[][] FullForwardLogits(Idefics3Model model, Idefics3Inputs prompt, int[] sequence)
    {
        using IDisposable noGrad = Tape.NoGrad();
        using var scope = new TensorScope();
        Idefics3Inputs full = prompt with
        {
            SeqLen = sequence.Length,
            InputIds = sequence,
            AttentionMask = Enumerable.Repeat((byte)1, sequence.Length).ToArray(),
        };
        float[] logits = model.Logits(model.Forward(full)).ToFloatArray();
        int vocab = model.Config.Text.VocabSize;
        return Enumerable.Range(0, sequence.Length).Select(t => logits.AsSpan(t * vocab, vocab).ToArray()).ToArray();
    }
}
