using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using NativeVlm.Text;
using Xunit;
using Xunit.Abstractions;
using HfTokenizer = Tokenizers.DotNet.Tokenizer;

namespace NativeVlm.Tests;

/// <summary>
/// Seeded random texts encoded and decoded by NativeVlm and by Hugging Face's own Rust tokenizers
/// (Tokenizers.DotNet, whose Encode adds special tokens and whose Decode skips them): the real Qwen3
/// tokenizer, then small tokenizers with the pipelines of other families. Zero mismatches is the bar.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class HuggingFaceTokenizerTests(ITestOutputHelper output)
{
    private const int Qwen3Texts = 3000;
    private const int VariantTexts = 1000;
    private const int MaxPieces = 24;

    [Fact]
    public void Qwen3_encodes_and_decodes_random_text_exactly_as_hugging_face()
    {
        ByteLevelBpeTokenizer tokenizer = Qwen3Fixture.Tokenizer;
        using var reference = new HfTokenizer(vocabPath: Qwen3Fixture.TokenizerPath);
        var random = new Random(20250101);
        var stopwatch = Stopwatch.StartNew();
        List<string> mismatches = [];
        for (int i = 0; i < Qwen3Texts; i++)
        {
            string text = DerivedTokenizers.RandomText(random, MaxPieces);
            int[] ids = Compare(tokenizer, reference, text, mismatches);
            // The tokenizer's normalizer is NFC: decoding gives the normalized text back.
            if (tokenizer.Decode(ids) != text.Normalize(NormalizationForm.FormC))
            {
                mismatches.Add($"round trip {JsonSerializer.Serialize(text)}");
            }
        }
        output.WriteLine($"{Qwen3Texts} random texts, {mismatches.Count} mismatches, {stopwatch.ElapsedMilliseconds} ms");
        Assert.True(mismatches.Count == 0, string.Join("\n", mismatches.Take(10)));
    }

    [Fact]
    public void Qwen3_decodes_random_ids_exactly_as_hugging_face()
    {
        ByteLevelBpeTokenizer tokenizer = Qwen3Fixture.Tokenizer;
        using var reference = new HfTokenizer(vocabPath: Qwen3Fixture.TokenizerPath);
        int idCount = tokenizer.AddedTokens.Max(t => t.Id) + 1;
        var random = new Random(7);
        for (int i = 0; i < Qwen3Texts; i++)
        {
            // Random ids cut UTF-8 sequences anywhere: both sides must put U+FFFD in the same places.
            int[] ids = Enumerable.Range(0, random.Next(1, 10)).Select(_ => random.Next(idCount)).ToArray();
            Assert.Equal(reference.Decode(ids.Select(id => (uint)id).ToArray()), tokenizer.Decode(ids, skipSpecialTokens: true));
        }
    }

    public static TheoryData<string> VariantNames => new(DerivedTokenizers.Variants.Keys);

    [Theory]
    [MemberData(nameof(VariantNames))]
    public void A_pipeline_variant_encodes_and_decodes_exactly_as_hugging_face(string variant)
    {
        using var folder = new TempDirectory();
        JsonObject json = DerivedTokenizers.Variants[variant]();
        string path = DerivedTokenizers.Write(json, folder, "tokenizer.json");
        ByteLevelBpeTokenizer tokenizer = ByteLevelBpeTokenizer.Load(path);
        using var reference = new HfTokenizer(vocabPath: path);
        var random = new Random(variant.Length);
        var seenIds = new HashSet<int>();
        List<string> mismatches = [];
        for (int i = 0; i < VariantTexts; i++)
        {
            seenIds.UnionWith(Compare(tokenizer, reference, DerivedTokenizers.RandomText(random, MaxPieces / 2), mismatches));
        }
        output.WriteLine($"{variant}: {VariantTexts} random texts, {mismatches.Count} mismatches");
        Assert.True(mismatches.Count == 0, string.Join("\n", mismatches.Take(10)));
        foreach ((string content, string flags) in DerivedTokenizers.ExtraAddedTokens.Where(_ => variant.StartsWith("added tokens", StringComparison.Ordinal)))
        {
            Assert.True(seenIds.Contains(DerivedTokenizers.AddedTokenId(json, content)), $"the texts never produced the added token '{content}' ({flags})");
        }
    }

    /// <summary>Encodes with both, decodes the reference ids with both; records any difference.</summary>
    private static int[] Compare(ByteLevelBpeTokenizer tokenizer, HfTokenizer reference, string text, List<string> mismatches)
    {
        int[] expected = reference.Encode(text).Select(id => (int)id).ToArray();
        int[] actual = tokenizer.Encode(text);
        if (!actual.SequenceEqual(expected))
        {
            mismatches.Add($"encode {JsonSerializer.Serialize(text)}: expected [{string.Join(", ", expected)}], got [{string.Join(", ", actual)}]");
        }
        string expectedText = reference.Decode(expected.Select(id => (uint)id).ToArray());
        if (tokenizer.Decode(expected, skipSpecialTokens: true) != expectedText)
        {
            mismatches.Add($"decode {JsonSerializer.Serialize(text)}: expected {JsonSerializer.Serialize(expectedText)}");
        }
        return actual;
    }
}
