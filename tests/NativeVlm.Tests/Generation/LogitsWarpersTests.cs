using NativeVlm.Generation;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Training;
using Xunit;

namespace NativeVlm.Tests.Generation;

/// <summary>
/// The sampling warpers against hand computations of what transformers' TemperatureLogitsWarper,
/// TopKLogitsWarper and TopPLogitsWarper do to a small logits vector, the draw, and sampled generation.
/// </summary>
public class LogitsWarpersTests
{
    /// <summary>ln of the probabilities 0.5, 0.3, 0.15, 0.05: softmax gives them back.</summary>
    private static float[] Logits() => [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.15f), MathF.Log(0.05f)];

    [Fact]
    public void Temperature_divides_the_logits()
    {
        float[] logits = [1f, 2f, -3f];

        LogitsWarpers.Temperature(logits, 2.0);

        Assert.Equal([0.5f, 1f, -1.5f], logits);
    }

    [Fact]
    public void Top_k_keeps_the_k_largest_and_ties_with_the_kth()
    {
        float[] two = [1f, 3f, 2f, 3f];
        float[] three = [1f, 3f, 2f, 3f];
        float[] more = [1f, 3f, 2f, 3f];

        LogitsWarpers.TopK(two, 2);
        LogitsWarpers.TopK(three, 3);
        LogitsWarpers.TopK(more, 10); // capped at the vocabulary: nothing removed

        float inf = float.NegativeInfinity;
        Assert.Equal([inf, 3f, inf, 3f], two);
        Assert.Equal([inf, 3f, 2f, 3f], three);
        Assert.Equal([1f, 3f, 2f, 3f], more);
    }

    [Fact]
    public void Top_p_removes_the_tail_whose_cumulative_probability_is_within_one_minus_top_p()
    {
        // Ascending probabilities 0.05, 0.15, 0.3, 0.5 have cumulative sums 0.05, 0.2, 0.5, 1.0. top_p 0.75
        // removes those ≤ 0.25 (0.05 and 0.15); top_p 0 removes all but the largest, which always stays.
        float[] nucleus = Logits();
        float[] greedy = Logits();

        LogitsWarpers.TopP(nucleus, 0.75);
        LogitsWarpers.TopP(greedy, 0.0);

        float inf = float.NegativeInfinity;
        Assert.Equal([Logits()[0], Logits()[1], inf, inf], nucleus);
        Assert.Equal([Logits()[0], inf, inf, inf], greedy);
    }

    [Fact]
    public void Warp_applies_temperature_before_top_p()
    {
        // Temperature 0.5 squares the probabilities: 0.25, 0.09, 0.0225, 0.0025 over 0.365 = 0.685, 0.247,
        // 0.062, 0.007, cumulative ascending 0.007, 0.068, 0.315, 1. top_p 0.6 removes those ≤ 0.4: only the
        // largest stays. Top-p first would keep 0.5 and 0.3 (cumulative 0.05, 0.2 ≤ 0.4; 0.5 > 0.4).
        float[] logits = Logits();

        LogitsWarpers.Warp(logits, temperature: 0.5, topK: 0, topP: 0.6);

        Assert.Equal(1, logits.Count(float.IsFinite));
        Assert.True(float.IsFinite(logits[0]));
    }

    [Fact]
    public void Sample_draws_tokens_with_their_softmax_probabilities()
    {
        const int draws = 20_000;
        var random = new Xoshiro256(7);
        var counts = new int[4];

        for (int i = 0; i < draws; i++)
        {
            counts[LogitsWarpers.Sample(Logits(), random)]++;
        }

        // A frequency's standard deviation is at most √(0.25 / 20000) = 0.0035; 0.02 is over 5 of them.
        double[] expected = [0.5, 0.3, 0.15, 0.05];
        for (int t = 0; t < 4; t++)
        {
            Assert.InRange((double)counts[t] / draws, expected[t] - 0.02, expected[t] + 0.02);
        }
    }

    [Fact]
    public void Sample_never_draws_a_removed_token()
    {
        var random = new Xoshiro256(1);
        float inf = float.NegativeInfinity;

        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(2, LogitsWarpers.Sample([inf, inf, 0.3f, inf], random));
        }
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Sampling_with_a_seed_repeats_and_top_k_one_is_greedy()
    {
        var fixture = new GenerateFixture("generate-greedy");
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(fixture.ModelDir, ctx);
        Idefics3Inputs inputs = fixture.ReadInputs("prompt.0.");
        GenerationSettings greedy = new(fixture.MaxNewTokens, DoSample: false, GenerationSettings.DefaultTemperature,
            GenerationSettings.DefaultTopK, GenerationSettings.DefaultTopP, Seed: 0, EosTokenIds: [fixture.NeverProducedEos], fixture.PadTokenId);
        GenerationSettings sampling = greedy with { DoSample = true, Temperature = 1.5, TopK = 0, Seed = 11 };

        int[] first = Generator.Generate(model, inputs, sampling).Rows[0].TokenIds;
        int[] again = Generator.Generate(model, inputs, sampling).Rows[0].TokenIds;
        int[] topOne = Generator.Generate(model, inputs, sampling with { TopK = 1 }).Rows[0].TokenIds;
        int[] greedyIds = Generator.Generate(model, inputs, greedy).Rows[0].TokenIds;

        Assert.Equal(first, again);
        Assert.Equal(greedyIds, topOne);
        // Temperature 1.5 flattens a random model's distribution over 300 tokens: some draw leaves the greedy path.
        Assert.NotEqual(greedyIds, first);
    }

    [Theory]
    [InlineData(0, 1.0, 50, 1.0, "max_new_tokens")]
    [InlineData(20, 0.0, 50, 1.0, "temperature")]
    [InlineData(20, 1.0, -1, 1.0, "top_k")]
    [InlineData(20, 1.0, 50, 1.5, "top_p")]
    public void Settings_transformers_refuses_are_named(int maxNewTokens, double temperature, int topK, double topP, string field)
    {
        var settings = new GenerationSettings(maxNewTokens, DoSample: true, temperature, topK, topP, Seed: 0, EosTokenIds: [2], PadTokenId: 0);

        var e = Assert.Throws<ArgumentException>(settings.Validate);

        Assert.StartsWith(field, e.Message);
    }
}
