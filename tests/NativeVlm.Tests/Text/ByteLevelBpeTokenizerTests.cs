using System.Text.Json.Nodes;
using NativeVlm.Text;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// What tokenizer.json loading refuses, and how the refusal reads: each unsupported or inconsistent
/// component is an error naming the file and the component's JSON path. The files are the Qwen3
/// fixture's pipeline (cut small) with one component changed.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class ByteLevelBpeTokenizerTests
{
    private static JsonObject Qwen3Cut() => DerivedTokenizers.Variants["qwen3 pipeline, merges as 'a b' strings"]();

    public static TheoryData<string, string, string> Refusals => new()
    {
        { """{"model": {"type": "WordPiece"}}""", "model.type", "'WordPiece' is not supported" },
        { """{"model": {"byte_fallback": true}}""", "model.byte_fallback", "byte fallback" },
        { """{"model": {"dropout": 0.1}}""", "model.dropout", "dropout" },
        { """{"model": {"continuing_subword_prefix": "##"}}""", "model.continuing_subword_prefix", "'##' is not supported" },
        { """{"normalizer": {"type": "Lowercase"}}""", "normalizer.type", "'Lowercase' is not supported" },
        { """{"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Strip"}]}}""", "normalizer.normalizers[1].type", "'Strip' is not supported" },
        { """{"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Metaspace"}]}}""", "pre_tokenizer.pretokenizers[0].type", "'Metaspace' is not supported" },
        { """{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\bword"}, "behavior": "Isolated"}}""", "pre_tokenizer.pattern.Regex", @"the escape \b" },
        { """{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "x"}, "behavior": "Sideways"}}""", "pre_tokenizer.behavior", "'Sideways' is not a split behavior" },
        { """{"pre_tokenizer": {"type": "Digits", "individual_digits": true}}""", "pre_tokenizer", "has no ByteLevel step" },
        { """{"pre_tokenizer": null}""", "", "has no pre_tokenizer" },
        { """{"decoder": {"type": "WordPiece"}}""", "decoder.type", "'WordPiece' is not supported" },
        { """{"post_processor": {"type": "RobertaProcessing"}}""", "post_processor.type", "'RobertaProcessing' is not supported" },
    };

    /// <summary>Each JSON object is merged into the file (a key's object into that key's object); null removes.</summary>
    [Theory]
    [MemberData(nameof(Refusals))]
    public void An_unsupported_component_is_an_error_naming_it_and_the_file(string change, string jsonPath, string detail)
    {
        JsonObject tokenizer = Qwen3Cut();
        foreach ((string key, JsonNode? value) in JsonNode.Parse(change)!.AsObject())
        {
            if (value is JsonObject changes && tokenizer[key] is JsonObject target && changes["type"] is null)
            {
                foreach ((string field, JsonNode? fieldValue) in changes)
                {
                    target[field] = fieldValue?.DeepClone();
                }
            }
            else
            {
                tokenizer[key] = value?.DeepClone();
            }
        }
        using var folder = new TempDirectory();
        string path = DerivedTokenizers.Write(tokenizer, folder, "tokenizer.json");

        TokenizerException e = Assert.Throws<TokenizerException>(() => ByteLevelBpeTokenizer.Load(path));

        Assert.Equal(path, e.FilePath);
        Assert.Equal(jsonPath, e.JsonPath);
        Assert.StartsWith(path, e.Message);
        Assert.Contains(detail, e.Message);
    }

    [Fact]
    public void A_merge_that_is_not_two_tokens_is_an_error_naming_it()
    {
        JsonObject tokenizer = Qwen3Cut();
        tokenizer["model"]!["merges"]!.AsArray()[2] = "a b c";
        using var folder = new TempDirectory();

        TokenizerException e = Assert.Throws<TokenizerException>(() => ByteLevelBpeTokenizer.Load(DerivedTokenizers.Write(tokenizer, folder, "t.json")));

        Assert.Equal("model.merges[2]", e.JsonPath);
        Assert.Contains("'a b c' is not two tokens", e.Message);
    }

    /// <summary>Hugging Face's tokenizers renumber added tokens on loading; a file whose ids disagree would encode differently.</summary>
    [Fact]
    public void An_added_token_id_that_hugging_face_would_change_is_an_error()
    {
        JsonObject tokenizer = Qwen3Cut();
        JsonNode last = tokenizer["added_tokens"]!.AsArray()[^1]!;
        last["id"] = last["id"]!.GetValue<int>() + 5;
        using var folder = new TempDirectory();

        TokenizerException e = Assert.Throws<TokenizerException>(() => ByteLevelBpeTokenizer.Load(DerivedTokenizers.Write(tokenizer, folder, "t.json")));

        Assert.Equal($"added_tokens[{tokenizer["added_tokens"]!.AsArray().Count - 1}]", e.JsonPath);
        Assert.Contains("Hugging Face's tokenizers load it as", e.Message);
    }

    [Fact]
    public void Text_with_an_unpaired_surrogate_is_refused()
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => Qwen3Fixture.Tokenizer.Encode("ab\uD800c"));
        Assert.Contains("U+D800 at index 2", e.Message);
    }

    [Fact]
    public void Decoding_an_id_that_no_token_has_is_refused()
    {
        int beyond = Qwen3Fixture.Tokenizer.AddedTokens.Max(t => t.Id) + 1;
        Assert.Throws<ArgumentOutOfRangeException>(() => Qwen3Fixture.Tokenizer.Decode([beyond]));
    }

    [Fact]
    public void A_folder_loads_its_tokenizer_json()
    {
        using var folder = new TempDirectory();
        string path = DerivedTokenizers.Write(Qwen3Cut(), folder, ByteLevelBpeTokenizer.FileName);
        Assert.Equal(ByteLevelBpeTokenizer.Load(path).Encode("Hello, world!"), ByteLevelBpeTokenizer.Load(folder.Root).Encode("Hello, world!"));
    }
}
