using System.Text.Json;
using System.Text.Json.Nodes;
using NativeVlm.Models;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>config.json: the fixtures' values, transformers' defaults, and the fields NativeVlm refuses.</summary>
public class ConfigTests
{
    private static string ConfigPath(string folder) => Fixtures.Path([.. folder.Split('/'), Idefics3Config.FileName]);

    private static JsonElement Field(JsonElement section, string key) => section.GetProperty(key);

    private static int? NullableInt(JsonElement section, string key) =>
        Field(section, key).ValueKind == JsonValueKind.Null ? null : Field(section, key).GetInt32();

    private static int[] IntList(JsonElement section, string key) => Field(section, key).ValueKind switch
    {
        JsonValueKind.Null => [],
        JsonValueKind.Array => Field(section, key).EnumerateArray().Select(e => e.GetInt32()).ToArray(),
        _ => [Field(section, key).GetInt32()],
    };

    /// <summary>Full to_dict() configs (the tiny models) and a save_pretrained diff-form one (smolvlm2).</summary>
    [Theory]
    [Trait("Category", Fixtures.Category)]
    [InlineData("tiny-idefics3")]
    [InlineData("tiny-qwen3-smvl")]
    [InlineData("stitch-sources/smolvlm2")]
    public void A_fixture_config_parses_to_the_values_of_its_json(string folder)
    {
        string path = ConfigPath(folder);
        Idefics3Config config = Idefics3Config.Load(path);
        using JsonDocument raw = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement root = raw.RootElement, v = root.GetProperty("vision_config"), t = root.GetProperty("text_config");

        Assert.Equal(Field(root, "image_token_id").GetInt32(), config.ImageTokenId);
        Assert.Equal(Field(root, "scale_factor").GetInt32(), config.ScaleFactor);
        Assert.Equal(Field(root, "tie_word_embeddings").GetBoolean(), config.TieWordEmbeddings);

        Assert.Equal(Field(v, "hidden_size").GetInt32(), config.Vision.HiddenSize);
        Assert.Equal(Field(v, "intermediate_size").GetInt32(), config.Vision.IntermediateSize);
        Assert.Equal(Field(v, "num_hidden_layers").GetInt32(), config.Vision.NumHiddenLayers);
        Assert.Equal(Field(v, "num_attention_heads").GetInt32(), config.Vision.NumAttentionHeads);
        Assert.Equal(Field(v, "num_channels").GetInt32(), config.Vision.NumChannels);
        Assert.Equal(Field(v, "image_size").GetInt32(), config.Vision.ImageSize);
        Assert.Equal(Field(v, "patch_size").GetInt32(), config.Vision.PatchSize);
        Assert.Equal(Field(v, "layer_norm_eps").GetDouble(), config.Vision.LayerNormEps);
        Assert.Equal(Field(v, "hidden_act").GetString(), config.Vision.HiddenAct);

        Assert.Equal(Field(t, "model_type").GetString(), config.Text.ModelType.ToString().ToLowerInvariant());
        Assert.Equal(Field(t, "model_type").GetString() == "qwen3", config.Text.HasQkNorm);
        Assert.Equal(Field(t, "vocab_size").GetInt32(), config.Text.VocabSize);
        Assert.Equal(Field(t, "hidden_size").GetInt32(), config.Text.HiddenSize);
        Assert.Equal(Field(t, "intermediate_size").GetInt32(), config.Text.IntermediateSize);
        Assert.Equal(Field(t, "num_hidden_layers").GetInt32(), config.Text.NumHiddenLayers);
        Assert.Equal(Field(t, "num_attention_heads").GetInt32(), config.Text.NumAttentionHeads);
        Assert.Equal(Field(t, "num_key_value_heads").GetInt32(), config.Text.NumKeyValueHeads);
        Assert.Equal(Field(t, "head_dim").GetInt32(), config.Text.HeadDim);
        Assert.Equal(Field(t, "rms_norm_eps").GetDouble(), config.Text.RmsNormEps);
        Assert.Equal(Field(t, "rope_theta").GetDouble(), config.Text.RopeTheta);
        Assert.Equal(Field(t, "max_position_embeddings").GetInt32(), config.Text.MaxPositionEmbeddings);
        Assert.Equal(Field(t, "hidden_act").GetString(), config.Text.HiddenAct);
        Assert.Equal(Field(t, "tie_word_embeddings").GetBoolean(), config.Text.TieWordEmbeddings);
        Assert.Equal(NullableInt(t, "pad_token_id"), config.Text.PadTokenId);
        Assert.Equal(NullableInt(t, "bos_token_id"), config.Text.BosTokenId);
        Assert.Equal(IntList(t, "eos_token_id"), config.Text.EosTokenIds);

        int patchesPerSide = Field(v, "image_size").GetInt32() / Field(v, "patch_size").GetInt32();
        int scale = Field(root, "scale_factor").GetInt32();
        Assert.Equal(patchesPerSide * patchesPerSide / (scale * scale), config.ImageSeqLen);
        Assert.Equal(Field(v, "hidden_size").GetInt32() * scale * scale, config.ConnectorInputSize);
    }

    /// <summary>SmolVLM-Instruct, -256M and -500M as param-counts.json reconstructs them, against the facts it states.</summary>
    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Real_smolvlm_configs_parse_to_their_stated_facts()
    {
        string path = Fixtures.Path("param-counts", "param-counts.json");
        using JsonDocument document = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement models = document.RootElement.GetProperty("models");
        Assert.NotEmpty(models.EnumerateObject());

        foreach (JsonProperty model in models.EnumerateObject())
        {
            Idefics3Config config = Idefics3Config.Parse(model.Value.GetProperty("config").GetRawText(), $"{path}:{model.Name}");
            JsonElement facts = model.Value.GetProperty("facts"), v = facts.GetProperty("vision"), t = facts.GetProperty("text");

            Assert.Equal(Field(v, "hidden_size").GetInt32(), config.Vision.HiddenSize);
            Assert.Equal(Field(v, "intermediate_size").GetInt32(), config.Vision.IntermediateSize);
            Assert.Equal(Field(v, "num_hidden_layers").GetInt32(), config.Vision.NumHiddenLayers);
            Assert.Equal(Field(v, "num_attention_heads").GetInt32(), config.Vision.NumAttentionHeads);
            Assert.Equal(Field(v, "patch_size").GetInt32(), config.Vision.PatchSize);
            Assert.Equal(Field(v, "image_size").GetInt32(), config.Vision.ImageSize);
            Assert.Equal(Field(facts, "scale_factor").GetInt32(), config.ScaleFactor);
            Assert.Equal(Field(facts, "tie_word_embeddings").GetBoolean(), config.TieWordEmbeddings);
            Assert.Equal(TextModelType.Llama, config.Text.ModelType);
            Assert.Equal(Field(t, "hidden_size").GetInt32(), config.Text.HiddenSize);
            Assert.Equal(Field(t, "intermediate_size").GetInt32(), config.Text.IntermediateSize);
            Assert.Equal(Field(t, "num_hidden_layers").GetInt32(), config.Text.NumHiddenLayers);
            Assert.Equal(Field(t, "num_attention_heads").GetInt32(), config.Text.NumAttentionHeads);
            Assert.Equal(Field(t, "num_key_value_heads").GetInt32(), config.Text.NumKeyValueHeads);
            Assert.Equal(Field(t, "hidden_size").GetInt32() / Field(t, "num_attention_heads").GetInt32(), config.Text.HeadDim);
            Assert.Equal(Field(t, "vocab_size").GetInt32(), config.Text.VocabSize);
            Assert.Equal(Field(t, "rope_theta").GetDouble(), config.Text.RopeTheta);
            int patchesPerSide = config.Vision.ImageSize / config.Vision.PatchSize;
            Assert.Equal(patchesPerSide * patchesPerSide / (config.ScaleFactor * config.ScaleFactor), config.ImageSeqLen);
        }
    }

    /// <summary>
    /// transformers' own defaults do not make a runnable model: the 7 patches per side of the default
    /// vision tower (224 px, patch 32) do not pixel-shuffle by the default scale_factor 2.
    /// </summary>
    private const string RunnableMinimum = """ "scale_factor": 1 """;

    [Fact]
    public void Absent_sections_take_idefics3_defaults_with_its_default_llama()
    {
        Idefics3Config config = Idefics3Config.Parse($$"""{ {{RunnableMinimum}} }""", "config.json");

        Assert.Equal(128_257, config.ImageTokenId);
        Assert.False(config.TieWordEmbeddings);
        Assert.Equal(new VisionConfig(1152, 3072, 12, 16, 3, 224, 32, 1e-6, "gelu_pytorch_tanh"), config.Vision);
        // Idefics3Config(text_config=None): LlamaConfig(rms_norm_eps=1e-5, pad_token_id=128002).
        Assert.Equivalent(
            new TextConfig(TextModelType.Llama, 32_000, 4096, 11_008, 32, 32, 32, 128, 1e-5, 10_000, 2048, "silu", false, 128_002, 1, [2]),
            config.Text, strict: true);
    }

    [Fact]
    public void An_empty_text_config_is_a_default_llama()
    {
        Idefics3Config config = Idefics3Config.Parse($$"""{ {{RunnableMinimum}}, "text_config": {} }""", "config.json");

        Assert.Equivalent(
            new TextConfig(TextModelType.Llama, 32_000, 4096, 11_008, 32, 32, 32, 128, 1e-6, 10_000, 2048, "silu", false, null, 1, [2]),
            config.Text, strict: true);
    }

    [Fact]
    public void A_qwen3_text_config_takes_qwen3_defaults()
    {
        Idefics3Config config = Idefics3Config.Parse($$"""{ {{RunnableMinimum}}, "text_config": {"model_type": "qwen3"} }""", "config.json");

        Assert.Equivalent(
            new TextConfig(TextModelType.Qwen3, 151_936, 4096, 22_016, 32, 32, 32, 128, 1e-6, 10_000, 32_768, "silu", false, null, null, []),
            config.Text, strict: true);
    }

    [Theory]
    // Llama: None head_dim and num_key_value_heads fall back to hidden/heads and heads.
    [InlineData("""{"hidden_size": 64, "num_attention_heads": 4}""", 4, 16)]
    // Qwen3: an explicit None does the same; a given head_dim is kept even where it is not hidden/heads.
    [InlineData("""{"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": null, "head_dim": null}""", 4, 16)]
    [InlineData("""{"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32}""", 2, 32)]
    // Qwen3: absent, they are 32 and 128, not heads and hidden/heads (64 and 64 here).
    [InlineData("""{"model_type": "qwen3", "hidden_size": 4096, "num_attention_heads": 64}""", 32, 128)]
    public void Head_dim_and_key_value_heads_follow_hf(string textConfig, int kvHeads, int headDim)
    {
        Idefics3Config config = Idefics3Config.Parse($$"""{ {{RunnableMinimum}}, "text_config": {{textConfig}} }""", "config.json");

        Assert.Equal(kvHeads, config.Text.NumKeyValueHeads);
        Assert.Equal(headDim, config.Text.HeadDim);
    }

    /// <summary>The fixture's config.json with dotted-path fields replaced (JSON values), written to a temp folder.</summary>
    private static string WriteConfig(TempDirectory dir, string model, string overrides)
    {
        JsonNode config = JsonNode.Parse(File.ReadAllText(ConfigPath(model)))!;
        foreach ((string path, JsonNode? value) in JsonNode.Parse(overrides)!.AsObject())
        {
            string[] keys = path.Split('.');
            JsonObject section = keys[..^1].Aggregate(config.AsObject(), (node, key) => node[key]!.AsObject());
            section[keys[^1]] = value?.DeepClone();
        }
        string file = dir.Path(Idefics3Config.FileName);
        File.WriteAllText(file, config.ToJsonString());
        return file;
    }

    [Theory]
    [Trait("Category", Fixtures.Category)]
    [InlineData("tiny-idefics3", """{"text_config.hidden_act": "gelu"}""", "text_config.hidden_act", "text_config.hidden_act = 'gelu' is not supported (expected silu)")]
    [InlineData("tiny-idefics3", """{"vision_config.hidden_act": "gelu"}""", "vision_config.hidden_act", "vision_config.hidden_act = 'gelu' is not supported (expected gelu_pytorch_tanh)")]
    [InlineData("tiny-idefics3", """{"text_config.rope_scaling": {"rope_type": "llama3", "factor": 8}}""", "text_config.rope_scaling", """text_config.rope_scaling = {"rope_type":"llama3","factor":8} is not supported (expected null""")]
    [InlineData("tiny-idefics3", """{"text_config.attention_bias": true}""", "text_config.attention_bias", "text_config.attention_bias = true is not supported (expected false)")]
    [InlineData("tiny-idefics3", """{"text_config.mlp_bias": true}""", "text_config.mlp_bias", "text_config.mlp_bias = true is not supported (expected false)")]
    [InlineData("tiny-idefics3", """{"text_config.model_type": "mistral"}""", "text_config.model_type", "text_config.model_type = 'mistral' is not supported (expected llama or qwen3)")]
    [InlineData("tiny-idefics3", """{"text_config.attention_dropout": 0.1}""", "text_config.attention_dropout", "text_config.attention_dropout = 0.1 is not supported (expected 0.0)")]
    [InlineData("tiny-idefics3", """{"vision_config.attention_dropout": 0.1}""", "vision_config.attention_dropout", "vision_config.attention_dropout = 0.1 is not supported (expected 0.0)")]
    [InlineData("tiny-idefics3", """{"model_type": "llava"}""", "model_type", "model_type = 'llava' is not supported (expected idefics3)")]
    [InlineData("tiny-idefics3", """{"scale_factor": 3}""", "scale_factor", "scale_factor = 3 is not supported (expected a divisor of the 4 patches per side")]
    [InlineData("tiny-idefics3", """{"text_config.num_key_value_heads": 3}""", "text_config.num_key_value_heads", "text_config.num_key_value_heads = 3 does not divide num_attention_heads 4")]
    [InlineData("tiny-idefics3", """{"vision_config.num_attention_heads": 5}""", "vision_config.num_attention_heads", "vision_config.num_attention_heads = 5 does not divide hidden_size 32")]
    [InlineData("tiny-idefics3", """{"text_config.hidden_size": "64"}""", "text_config.hidden_size", "text_config.hidden_size = '64' must be an integer")]
    [InlineData("tiny-idefics3", """{"vision_config.num_hidden_layers": 0}""", "vision_config.num_hidden_layers", "vision_config.num_hidden_layers = 0 must be positive")]
    [InlineData("tiny-idefics3", """{"text_config.rms_norm_eps": null}""", "text_config.rms_norm_eps", "text_config.rms_norm_eps = null must be a number")]
    [InlineData("tiny-idefics3", """{"text_config.eos_token_id": [2, "x"]}""", "text_config.eos_token_id", "text_config.eos_token_id = 'x' must be an integer")]
    [InlineData("tiny-idefics3", """{"vision_config": "siglip"}""", "vision_config", "vision_config = 'siglip' must be an object")]
    [InlineData("tiny-qwen3-smvl", """{"text_config.use_sliding_window": true, "text_config.sliding_window": 16, "text_config.max_window_layers": 1}""", "text_config.use_sliding_window", "text_config.use_sliding_window = true is not supported (expected false: sliding-window attention (16 tokens) would apply to layers 1..1)")]
    [InlineData("tiny-qwen3-smvl", """{"text_config.layer_types": ["full_attention", "sliding_attention"]}""", "text_config.layer_types", """text_config.layer_types = ["full_attention","sliding_attention"] is not supported""")]
    public void A_field_NativeVlm_cannot_run_is_an_error_naming_the_file_and_the_field(string model, string overrides, string jsonPath, string message)
    {
        using var dir = new TempDirectory();
        string file = WriteConfig(dir, model, overrides);

        var e = Assert.Throws<ConfigException>(() => Idefics3Config.Load(dir.Root));

        Assert.Equal(file, e.FilePath);
        Assert.Equal(jsonPath, e.JsonPath);
        Assert.StartsWith($"{file}: {message}", e.Message);
    }

    [Theory]
    [Trait("Category", Fixtures.Category)]
    [InlineData("tiny-idefics3", """{"foo": {"x": 1}, "text_config.bar": [1], "vision_config.baz": "q", "text_config.pretraining_tp": 2}""")]
    [InlineData("tiny-idefics3", """{"text_config.rope_scaling": {"rope_type": "default"}, "text_config.torch_dtype": "bfloat16"}""")]
    // Sliding windows that no layer uses: no window size, or max_window_layers covering every layer.
    [InlineData("tiny-qwen3-smvl", """{"text_config.use_sliding_window": true}""")]
    [InlineData("tiny-qwen3-smvl", """{"text_config.use_sliding_window": true, "text_config.sliding_window": 16, "text_config.max_window_layers": 2}""")]
    [InlineData("tiny-qwen3-smvl", """{"text_config.layer_types": ["full_attention", "full_attention"]}""")]
    public void Fields_that_do_not_change_the_computation_are_ignored(string model, string overrides)
    {
        using var dir = new TempDirectory();
        string file = WriteConfig(dir, model, overrides);

        Assert.Equivalent(Idefics3Config.Load(ConfigPath(model)), Idefics3Config.Load(file), strict: true);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Eos_may_be_one_id_or_a_list()
    {
        using var dir = new TempDirectory();
        WriteConfig(dir, "tiny-idefics3", """{"text_config.eos_token_id": [2, 7]}""");

        Assert.Equal([2, 7], Idefics3Config.Load(dir.Root).Text.EosTokenIds);
    }

    [Fact]
    public void A_file_that_is_not_json_names_the_file()
    {
        var e = Assert.Throws<ConfigException>(() => Idefics3Config.Parse("{\"scale_factor\": ", "snapshot/config.json"));

        Assert.Equal("snapshot/config.json", e.FilePath);
        Assert.StartsWith("snapshot/config.json: not valid JSON", e.Message);
    }
}
