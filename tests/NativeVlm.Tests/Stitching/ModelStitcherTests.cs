using System.Text.Json.Nodes;
using NativeVlm.Batches;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Stitching;
using NativeVlm.Text;
using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests.Stitching;

/// <summary>
/// The stitch of the stitch-sources fixture against transformers' stitched/ snapshot and stitch.json:
/// which tensors are copies of which, the new connector, config.json and generation_config.json, the
/// tokenizer and processor files; and the consistency check that refuses a stale id.
/// </summary>
[Trait("Category", Fixtures.Category)]
public sealed class ModelStitcherTests : IDisposable
{
    private readonly StitchSources _sources = new();

    private string Output => _sources.Path("stitched");

    private StitchReport Stitch() => ModelStitcher.Stitch(_sources.Vision, _sources.Text, Output, seed: 0, force: false);

    [Fact]
    public void Copied_tensors_are_byte_identical_to_their_sources_and_the_lm_head_is_not_stored()
    {
        StitchReport report = Stitch();

        JsonObject tensors = _sources.Recipe["tensors"]!.AsObject();
        JsonArray copies = tensors["copied_byte_identical"]!.AsArray();
        using SafeTensorsReader stitched = SafeTensorsReader.Open(Output);
        using SafeTensorsReader expected = SafeTensorsReader.Open(Fixtures.Path(StitchSources.Fixture, "stitched"));
        Assert.Equal(expected.Names.Order(StringComparer.Ordinal), stitched.Names.Order(StringComparer.Ordinal));
        Assert.Equal((int)tensors["counts"]!["stitched"]!, stitched.Names.Count);
        foreach (JsonNode? copy in copies)
        {
            string name = (string)copy!["stitched"]!;
            string sourceFolder = System.IO.Path.GetDirectoryName((string)copy["source"]!)!;
            using SafeTensorsReader source = SafeTensorsReader.Open(System.IO.Path.Combine(sourceFolder == "smolvlm2" ? _sources.Vision : _sources.Text));
            string sourceKey = (string)copy["source_key"]!;
            Assert.Equal(source.GetInfo(sourceKey).DType, stitched.GetInfo(name).DType);
            Assert.Equal(copy["shape"]!.AsArray().Select(d => (long)d!), stitched.GetInfo(name).Shape.ToArray());
            Assert.True(source.GetBytes(sourceKey).SequenceEqual(stitched.GetBytes(name)), $"{name} is not a byte copy of {sourceKey}");
        }
        Assert.Equal((int)tensors["counts"]!["copied_from_smolvlm2"]!, report.VisionTensors);
        Assert.Equal((int)tensors["counts"]!["copied_from_qwen3"]!, report.TextTensors);
        Assert.False(stitched.Contains(StitchedSnapshotCheck.LmHeadName));
        Assert.True(report.Ids.TiedLmHead);
    }

    [Fact]
    public void The_connector_is_new_shaped_vision_times_scale_squared_to_text_hidden_and_within_torchs_bounds()
    {
        StitchReport report = Stitch();

        JsonObject connector = _sources.Recipe["connector"]!.AsObject();
        long[] shape = connector["shape"]!.AsArray().Select(d => (long)d!).ToArray();
        Assert.Equal(StitchedSnapshotCheck.ConnectorName, (string)connector["key"]!);
        Assert.Equal(shape, report.Ids.ConnectorShape);
        float[] weight;
        using (SafeTensorsReader stitched = SafeTensorsReader.Open(Output))
        {
            Assert.Equal(shape, stitched.GetInfo(StitchedSnapshotCheck.ConnectorName).Shape.ToArray());
            Assert.Equal(SafeTensorsDType.F32, stitched.GetInfo(StitchedSnapshotCheck.ConnectorName).DType);
            weight = stitched.ReadFloat32(StitchedSnapshotCheck.ConnectorName);
        }
        float bound = (float)(1 / Math.Sqrt(shape[1]));
        Assert.All(weight, w => Assert.InRange(w, -bound, bound));
        // Thousands of uniform draws reach past half the bound on both sides; a zero or constant weight would not.
        Assert.True(weight.Min() < -bound / 2 && weight.Max() > bound / 2, $"draws span [{weight.Min()}, {weight.Max()}], bound {bound}");
        // The seed decides the draw: the same seed gives the same bytes (stitched again over the first output, --force), another seed others.
        ModelStitcher.Stitch(_sources.Vision, _sources.Text, Output, seed: 0, force: true);
        ModelStitcher.Stitch(_sources.Vision, _sources.Text, _sources.Path("other"), seed: 1, force: false);
        using SafeTensorsReader same = SafeTensorsReader.Open(Output), other = SafeTensorsReader.Open(_sources.Path("other"));
        Assert.Equal(weight, same.ReadFloat32(StitchedSnapshotCheck.ConnectorName));
        Assert.NotEqual(weight, other.ReadFloat32(StitchedSnapshotCheck.ConnectorName));
    }

    [Fact]
    public void Config_json_reads_as_transformers_stitched_config_and_states_every_id_explicitly()
    {
        Stitch();

        Idefics3Config expected = Idefics3Config.Load(Fixtures.Path(StitchSources.Fixture, "stitched"));
        Idefics3Config actual = Idefics3Config.Load(Output);
        Assert.Equal(expected.Text.EosTokenIds, actual.Text.EosTokenIds);
        IReadOnlyList<int> same = expected.Text.EosTokenIds;
        Assert.Equal(expected, actual with { Text = actual.Text with { EosTokenIds = same } });

        JsonObject expectedJson = ReadJson(Fixtures.Path(StitchSources.Fixture, "stitched", "config.json"));
        JsonObject actualJson = ReadJson(System.IO.Path.Combine(Output, "config.json"));
        foreach (string field in new[] { "architectures", "model_type", "image_token_id", "vocab_size", "tie_word_embeddings", "scale_factor", "vision_config" })
        {
            Assert.True(JsonNode.DeepEquals(expectedJson[field], actualJson[field]), $"{field}: expected {expectedJson[field]?.ToJsonString()}, got {actualJson[field]?.ToJsonString()}");
        }
        // text_config is Qwen3's config.json: every field it states is transformers' stitched value.
        JsonObject text = actualJson["text_config"]!.AsObject();
        foreach ((string field, JsonNode? value) in text)
        {
            Assert.True(JsonNode.DeepEquals(expectedJson["text_config"]![field], value), $"text_config.{field}: expected {expectedJson["text_config"]![field]?.ToJsonString()}, got {value?.ToJsonString()}");
        }
        foreach (string field in new[] { "vocab_size", "tie_word_embeddings", "bos_token_id", "eos_token_id", "hidden_size", "model_type" })
        {
            Assert.True(text.ContainsKey(field), $"text_config.{field} is not stated");
        }
        Assert.True(JsonNode.DeepEquals(ReadJson(Fixtures.Path(StitchSources.Fixture, "stitched", "generation_config.json")),
            ReadJson(System.IO.Path.Combine(Output, "generation_config.json"))));
    }

    [Fact]
    public void Tokenizer_and_processor_files_make_qwen3s_reserved_tokens_the_image_tokens()
    {
        StitchReport report = Stitch();

        Assert.Equal(File.ReadAllBytes(System.IO.Path.Combine(_sources.Text, "tokenizer.json")), File.ReadAllBytes(System.IO.Path.Combine(Output, "tokenizer.json")));
        foreach (string file in new[] { "preprocessor_config.json", "processor_config.json" })
        {
            Assert.Equal(File.ReadAllBytes(System.IO.Path.Combine(_sources.Vision, file)), File.ReadAllBytes(System.IO.Path.Combine(Output, file)));
        }
        Assert.Equal(_sources.ImageToken, report.Ids.ImageToken);
        Assert.Equal(_sources.ImageTokenId, report.Ids.ImageTokenId);
        Assert.Equal(_sources.EosTokenId, report.Ids.EosTokenId);

        VlmProcessor processor = VlmProcessor.Load(Output);
        Assert.Equal(new ImageTokens(ModelStitcher.ImagePadToken, ModelStitcher.VisionStartToken, ModelStitcher.VisionPadToken), processor.Prompt.Tokens);
        Assert.Equal(_sources.ImageTokenId, processor.ImageTokenId);
        Assert.Equal(_sources.EosTokenId, processor.EosTokenId);
        string rendered = processor.Template.Render(
        [
            new ChatMessage("user", [ChatPart.Image, ChatPart.FromText("What is this?")]),
            new ChatMessage("assistant", [ChatPart.FromText("A grid.")]),
        ]);
        Assert.Equal("<|im_start|>user\n<|image_pad|>What is this?<|im_end|>\n<|im_start|>assistant\nA grid.<|im_end|>\n", rendered);
        // Qwen3's own string content renders as its ChatML.
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", processor.Template.Render([new ChatMessage("user", "Hi")], addGenerationPrompt: true));
        string expanded = processor.Prompt.Expand(rendered, [1], [2]);
        string tile = string.Concat(Enumerable.Repeat("<|image_pad|>", processor.Prompt.ImageSeqLen));
        Assert.StartsWith($"<|im_start|>user\n<|vision_start|><row_1_col_1>{tile}<|vision_start|><row_1_col_2>{tile}\n\n<|vision_start|><|vision_pad|>{tile}<|vision_start|>What is this?", expanded);
        // The row/column markers are text: Qwen3 has no such tokens, and HF's processor writes them as text too.
        int[] ids = processor.Tokenizer.Encode(expanded, addSpecialTokens: false);
        Assert.Equal(3 * processor.Prompt.ImageSeqLen, ids.Count(id => id == _sources.ImageTokenId));
    }

    [Fact]
    public void A_stale_image_token_id_vocab_size_or_tie_flag_is_rejected_naming_the_field()
    {
        Stitch();
        JsonObject smolvlm2 = _sources.Recipe["snapshots"]!["smolvlm2"]!.AsObject();
        int staleImageToken = (int)smolvlm2["image_token_id"]!, staleVocab = (int)smolvlm2["vocab_size"]!;

        AssertRejected(config => config["image_token_id"] = staleImageToken, "image_token_id");
        // The recipe's worst bug: a nested copy left stale while the top level is right.
        AssertRejected(config => config["text_config"]!["image_token_id"] = staleImageToken, "text_config.image_token_id");
        AssertRejected(config => config["text_config"]!["vocab_size"] = staleVocab, "text_config.vocab_size");
        // save_pretrained's diff form: the top-level true dropped, read as false, while the text config says true.
        AssertRejected(config => config.Remove("tie_word_embeddings"), "tie_word_embeddings");
    }

    [Fact]
    public void Sources_that_are_not_what_the_recipe_needs_and_a_non_empty_output_are_refused()
    {
        Directory.CreateDirectory(Output);
        File.WriteAllText(System.IO.Path.Combine(Output, "keep.txt"), "");
        var nonEmpty = Assert.Throws<ArgumentException>(() => Stitch());
        Assert.Contains($"the output folder {Output} is not empty", nonEmpty.Message);
        Directory.Delete(Output, recursive: true);

        var notIdefics3 = Assert.Throws<ConfigException>(() => ModelStitcher.Stitch(_sources.Text, _sources.Text, Output, 0, false));
        Assert.Equal("model_type", notIdefics3.JsonPath);
        Assert.Contains(System.IO.Path.Combine(_sources.Text, "config.json"), notIdefics3.Message);

        var notQwen3 = Assert.Throws<ConfigException>(() => ModelStitcher.Stitch(_sources.Vision, _sources.Vision, Output, 0, false));
        Assert.Equal("model_type", notQwen3.JsonPath);
        Assert.Contains(System.IO.Path.Combine(_sources.Vision, "config.json"), notQwen3.Message);

        string tokenizer = System.IO.Path.Combine(_sources.Text, "tokenizer.json");
        File.WriteAllText(tokenizer, File.ReadAllText(tokenizer).Replace(ModelStitcher.ImagePadToken, "<|not_image_pad|>"));
        var noImagePad = Assert.Throws<ConfigException>(() => Stitch());
        Assert.Contains(tokenizer, noImagePad.Message);
        Assert.Contains(ModelStitcher.ImagePadToken, noImagePad.Message);
        Assert.False(Directory.Exists(Output)); // nothing is written before the sources pass
    }

    private void AssertRejected(Action<JsonObject> corrupt, string field)
    {
        using var copy = new TempDirectory();
        StitchSources.CopyFolder(Output, copy.Root);
        JsonObject config = ReadJson(copy.Path("config.json"));
        corrupt(config);
        File.WriteAllText(copy.Path("config.json"), config.ToJsonString());

        var e = Assert.Throws<ConfigException>(() => StitchedSnapshotCheck.Run(copy.Root));

        Assert.Equal(field, e.JsonPath);
        Assert.Contains(copy.Path("config.json"), e.Message);
    }

    private static JsonObject ReadJson(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

    public void Dispose() => _sources.Dispose();
}
