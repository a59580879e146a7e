using System.Text.Json;

namespace NativeVlm.Models;

/// <summary>
/// config.json of an <c>Idefics3ForConditionalGeneration</c> snapshot (SmolVLM, SmolVLM2, and
/// stitched models with a Qwen3 decoder), read as transformers v4.46.3 reads it (Qwen3 text configs
/// as v4.51.3): an absent field takes the HF class's default, so the full <c>to_dict()</c> form and
/// save_pretrained's diff form give the same result. A field that changes the computation in a way
/// NativeVlm does not implement is an error naming the field; the rest (generation settings,
/// bookkeeping such as torch_dtype or pretraining_tp, which only splits matmuls into slices whose
/// sum is the same product) is ignored.
/// </summary>
/// <param name="ImageTokenId">The &lt;image&gt; token whose embeddings are replaced by image features.</param>
/// <param name="ScaleFactor">Pixel-shuffle factor of the connector.</param>
/// <param name="TieWordEmbeddings">
/// The top-level field: v4.46.3 ties lm_head to the text embeddings when it is true, and a file
/// that omits it reads as false even where text_config says true (stitch-sources fixture README).
/// </param>
public sealed record Idefics3Config(int ImageTokenId, int ScaleFactor, bool TieWordEmbeddings, VisionConfig Vision, TextConfig Text)
{
    public const string FileName = "config.json";

    /// <summary>Image tokens per frame: (image_size / patch_size)² / scale_factor².</summary>
    public int ImageSeqLen => Vision.NumPatches / (ScaleFactor * ScaleFactor);

    /// <summary>Width of the connector's input: vision hidden_size × scale_factor².</summary>
    public int ConnectorInputSize => Vision.HiddenSize * ScaleFactor * ScaleFactor;

    /// <summary>A config.json, or a snapshot directory holding one.</summary>
    public static Idefics3Config Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        return Parse(File.ReadAllText(file), file);
    }

    /// <param name="json">The file's text.</param>
    /// <param name="filePath">Named by every error.</param>
    public static Idefics3Config Parse(string json, string filePath)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ConfigException(filePath, "", $"{filePath}: not valid JSON ({e.Message})");
        }
        using (document)
        {
            return Parse(ConfigJson.Root(filePath, document.RootElement));
        }
    }

    private static Idefics3Config Parse(ConfigJson root)
    {
        string modelType = root.String("model_type", "idefics3");
        if (modelType != "idefics3")
        {
            throw root.Unsupported("model_type", ConfigJson.Format(modelType), "idefics3");
        }
        VisionConfig vision = VisionConfig.Parse(root.Section("vision_config"));
        // Idefics3Config(text_config=None) builds LlamaConfig(rms_norm_eps=1e-5, pad_token_id=<its own pad_token_id>).
        TextConfig text = TextConfig.Parse(root.Section("text_config"), padWhenAbsent: root.NullableInt("pad_token_id", 128_002));

        int scaleFactor = root.PositiveInt("scale_factor", 2);
        if (vision.PatchesPerSide % scaleFactor != 0)
        {
            throw root.Unsupported("scale_factor", ConfigJson.Format(scaleFactor),
                $"a divisor of the {vision.PatchesPerSide} patches per side, image_size / patch_size, for the pixel shuffle");
        }
        // Not checked against vocab_size: HF builds such a model (param-counts' reconstructed configs
        // keep the default 128257 with 49155 tokens), and only a forward that meets the token can fail.
        int imageTokenId = root.Int("image_token_id", 128_257);
        return new Idefics3Config(imageTokenId, scaleFactor, root.Bool("tie_word_embeddings", false), vision, text);
    }

    /// <summary>Attention dropout acts in training, and NativeVlm has none.</summary>
    internal static void CheckNoAttentionDropout(ConfigJson section)
    {
        if (section.Double("attention_dropout", 0.0) != 0.0)
        {
            throw section.Unsupported("attention_dropout", section.Value("attention_dropout")!.Value, "0.0");
        }
    }
}

/// <summary>vision_config: the SigLIP-style encoder (Idefics3VisionConfig).</summary>
public sealed record VisionConfig(
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumChannels,
    int ImageSize,
    int PatchSize,
    double LayerNormEps,
    string HiddenAct)
{
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>
    /// image_size // patch_size, as HF counts them: the stride-patch_size convolution drops the
    /// remainder (SmolVLM-Instruct: 384 px, patch 14 → 27 patches, 6 pixels unused).
    /// </summary>
    public int PatchesPerSide => ImageSize / PatchSize;

    /// <summary>Patches of one frame, the rows of the position embedding.</summary>
    public int NumPatches => PatchesPerSide * PatchesPerSide;

    internal static VisionConfig Parse(ConfigJson v)
    {
        var config = new VisionConfig(
            HiddenSize: v.PositiveInt("hidden_size", 1152),
            IntermediateSize: v.PositiveInt("intermediate_size", 3072),
            NumHiddenLayers: v.PositiveInt("num_hidden_layers", 12),
            NumAttentionHeads: v.PositiveInt("num_attention_heads", 16),
            NumChannels: v.PositiveInt("num_channels", 3),
            ImageSize: v.PositiveInt("image_size", 224),
            PatchSize: v.PositiveInt("patch_size", 32),
            LayerNormEps: v.PositiveDouble("layer_norm_eps", 1e-6),
            HiddenAct: v.String("hidden_act", "gelu_pytorch_tanh"));

        if (config.HiddenAct != "gelu_pytorch_tanh")
        {
            throw v.Unsupported("hidden_act", ConfigJson.Format(config.HiddenAct), "gelu_pytorch_tanh");
        }
        Idefics3Config.CheckNoAttentionDropout(v);
        if (config.HiddenSize % config.NumAttentionHeads != 0)
        {
            throw v.Invalid("num_attention_heads", ConfigJson.Format(config.NumAttentionHeads), $"does not divide hidden_size {config.HiddenSize}");
        }
        return config;
    }
}

public enum TextModelType
{
    Llama,
    Qwen3,
}

/// <summary>
/// text_config: a Llama (LlamaConfig, v4.46.3) or Qwen3 (Qwen3Config, v4.51.3) decoder. Qwen3 adds
/// q_norm/k_norm (RMSNorm over head_dim before RoPE) and states head_dim explicitly. Supported as
/// transformers runs them with: SiLU MLP, no attention or MLP biases, unscaled RoPE, full attention.
/// </summary>
public sealed record TextConfig(
    TextModelType ModelType,
    int VocabSize,
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    double RmsNormEps,
    double RopeTheta,
    int MaxPositionEmbeddings,
    string HiddenAct,
    bool TieWordEmbeddings,
    int? PadTokenId,
    int? BosTokenId,
    IReadOnlyList<int> EosTokenIds)
{
    public bool HasQkNorm => ModelType == TextModelType.Qwen3;

    /// <param name="t">The text_config section; absent means Idefics3's default Llama.</param>
    /// <param name="padWhenAbsent">pad_token_id of the default Llama (Idefics3Config's own pad_token_id).</param>
    internal static TextConfig Parse(ConfigJson t, int? padWhenAbsent)
    {
        string modelTypeName = t.String("model_type", "llama");
        TextModelType modelType = modelTypeName switch
        {
            "llama" => TextModelType.Llama,
            "qwen3" => TextModelType.Qwen3,
            _ => throw t.Unsupported("model_type", ConfigJson.Format(modelTypeName), "llama or qwen3"),
        };
        bool qwen3 = modelType == TextModelType.Qwen3;

        int hiddenSize = t.PositiveInt("hidden_size", 4096);
        int heads = t.PositiveInt("num_attention_heads", 32);
        // Llama's num_key_value_heads and head_dim default to None (then heads and hidden/heads);
        // Qwen3's default to 32 and 128, and only an explicit None falls back.
        int kvHeads = t.NullablePositiveInt("num_key_value_heads", qwen3 ? 32 : null) ?? heads;
        int headDim = t.NullablePositiveInt("head_dim", qwen3 ? 128 : null) ?? hiddenSize / heads;
        var config = new TextConfig(
            modelType,
            VocabSize: t.PositiveInt("vocab_size", qwen3 ? 151_936 : 32_000),
            HiddenSize: hiddenSize,
            IntermediateSize: t.PositiveInt("intermediate_size", qwen3 ? 22_016 : 11_008),
            NumHiddenLayers: t.PositiveInt("num_hidden_layers", 32),
            NumAttentionHeads: heads,
            NumKeyValueHeads: kvHeads,
            HeadDim: headDim,
            RmsNormEps: t.PositiveDouble("rms_norm_eps", t.Exists ? 1e-6 : 1e-5),
            RopeTheta: t.PositiveDouble("rope_theta", 10_000.0),
            MaxPositionEmbeddings: t.PositiveInt("max_position_embeddings", qwen3 ? 32_768 : 2048),
            HiddenAct: t.String("hidden_act", "silu"),
            TieWordEmbeddings: t.Bool("tie_word_embeddings", false),
            PadTokenId: t.NullableInt("pad_token_id", t.Exists ? null : padWhenAbsent),
            BosTokenId: t.NullableInt("bos_token_id", qwen3 ? null : 1),
            EosTokenIds: t.IntList("eos_token_id", qwen3 ? [] : [2]));

        if (config.HiddenAct != "silu")
        {
            throw t.Unsupported("hidden_act", ConfigJson.Format(config.HiddenAct), "silu");
        }
        if (heads % kvHeads != 0)
        {
            throw t.Invalid("num_key_value_heads", ConfigJson.Format(kvHeads), $"does not divide num_attention_heads {heads}");
        }
        if (t.Bool("attention_bias", false))
        {
            throw t.Unsupported("attention_bias", ConfigJson.Format(true), "false");
        }
        if (!qwen3 && t.Bool("mlp_bias", false))
        {
            throw t.Unsupported("mlp_bias", ConfigJson.Format(true), "false");
        }
        Idefics3Config.CheckNoAttentionDropout(t);
        CheckRopeUnscaled(t);
        if (qwen3)
        {
            CheckFullAttention(t, config.NumHiddenLayers);
        }
        return config;
    }

    /// <summary>rope_scaling null, or rope_type "default" (the same unscaled frequencies).</summary>
    private static void CheckRopeUnscaled(ConfigJson t)
    {
        if (t.Value("rope_scaling") is not { } scaling)
        {
            return;
        }
        if (scaling.ValueKind == JsonValueKind.Object
            && (scaling.TryGetProperty("rope_type", out JsonElement type) || scaling.TryGetProperty("type", out type))
            && type.ValueKind == JsonValueKind.String && type.GetString() == "default")
        {
            return;
        }
        throw t.Unsupported("rope_scaling", scaling, "null: scaled RoPE is not implemented");
    }

    /// <summary>
    /// Qwen3 (v4.51.3) uses sliding-window attention in layers ≥ max_window_layers when
    /// use_sliding_window is set and sliding_window is not null; later versions list layer_types.
    /// </summary>
    private static void CheckFullAttention(ConfigJson t, int layers)
    {
        bool useSlidingWindow = t.Bool("use_sliding_window", false);
        int? slidingWindow = t.NullableInt("sliding_window", 4096);
        int maxWindowLayers = t.Int("max_window_layers", 28);
        if (useSlidingWindow && slidingWindow is not null && maxWindowLayers < layers)
        {
            throw t.Unsupported("use_sliding_window", ConfigJson.Format(true),
                $"false: sliding-window attention ({slidingWindow} tokens) would apply to layers {maxWindowLayers}..{layers - 1}");
        }
        if (t.Value("layer_types") is { } layerTypes
            && (layerTypes.ValueKind != JsonValueKind.Array
                || layerTypes.EnumerateArray().Any(l => l.ValueKind != JsonValueKind.String || l.GetString() != "full_attention")))
        {
            throw t.Unsupported("layer_types", layerTypes, "only \"full_attention\"");
        }
    }
}
