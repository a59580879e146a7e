using System.Text.Json;
using System.Text.Json.Nodes;
using NativeVlm.Batches;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Nn;
using NativeVlm.Text;
using NativeVlm.Vision;

namespace NativeVlm.Demo;

/// <summary>
/// A tiny SmolVLM-shaped Hugging Face snapshot with random weights, small enough that DPO on the CPU
/// takes minutes: Idefics3 with a SigLIP vision tower (64-pixel frames of 8-pixel patches, hidden 64,
/// 2 layers) and a Llama decoder (hidden 64, 2 layers, 4 query / 2 key-value heads), pixel shuffle 2,
/// so 16 image tokens per frame. The files are those of a real SmolVLM snapshot, in the forms
/// <see cref="VlmProcessor.Load"/> and <see cref="Idefics3Model.Load"/> read:
/// <list type="bullet">
/// <item>config.json: transformers' Idefics3Config fields (absent ones take the class defaults);</item>
/// <item>model.safetensors: f32, transformers' tensor names in its state-dict order;</item>
/// <item>tokenizer.json: byte-level BPE without merges, so each UTF-8 byte is one token whose id is the
/// byte, then SmolVLM's special tokens as added tokens;</item>
/// <item>tokenizer_config.json: SmolVLM-Instruct's chat template and its eos (&lt;end_of_utterance&gt;),
/// pad and bos tokens;</item>
/// <item>preprocessor_config.json: Idefics3ImageProcessor resizing every image to one 64-pixel frame,
/// without splitting, so each image is the global image alone;</item>
/// <item>processor_config.json: image_seq_len.</item>
/// </list>
/// </summary>
public static class DemoSnapshot
{
    /// <summary>HuggingFaceTB/SmolVLM-Instruct's chat_template.</summary>
    public const string ChatTemplate =
        "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
        + "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
        + "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

    public const string ImStart = "<|im_start|>", EndOfUtterance = "<end_of_utterance>", Pad = "<pad>";

    private const int ByteTokens = 256;

    /// <summary>Rows and columns of the &lt;row_r_col_c&gt; tokens, as many as a 4 × 4 split of an image would need.</summary>
    private const int GridSide = 4;

    private const int ImageSize = ShapePicture.Side, PatchSize = 8, ScaleFactor = 2;
    private const int VisionHidden = 64, VisionIntermediate = 128, VisionLayers = 2, VisionHeads = 4;
    private const int TextHidden = 64, TextIntermediate = 128, TextLayers = 2, TextHeads = 4, TextKeyValueHeads = 2;
    private const int MaxPositions = 512;

    /// <summary>The std of transformers' Idefics3 _init_weights for Linear, Conv2d and Embedding weights (initializer_range).</summary>
    private const double InitStd = 0.02;

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Added tokens in id order from 256: the global image, the row/column tokens, then the rest.</summary>
    internal static readonly string[] AddedTokens =
    [
        Idefics3Prompt.GlobalImageToken,
        .. Enumerable.Range(1, GridSide).SelectMany(r => Enumerable.Range(1, GridSide).Select(c => $"<row_{r}_col_{c}>")),
        Idefics3Prompt.FakeImageToken, Idefics3Prompt.ImageToken, ImStart, EndOfUtterance, Pad,
    ];

    /// <summary>Every token: the bytes, then the added tokens; also the text model's vocab_size.</summary>
    public static int VocabSize => ByteTokens + AddedTokens.Length;

    /// <summary>The id the tokenizer gives <paramref name="addedToken"/>.</summary>
    public static int TokenId(string addedToken)
    {
        int index = Array.IndexOf(AddedTokens, addedToken);
        return index >= 0 ? ByteTokens + index : throw new ArgumentException($"{addedToken} is not an added token of the demo tokenizer", nameof(addedToken));
    }

    /// <summary>Writes the snapshot's files into <paramref name="directory"/> (created if missing); the weights come from <paramref name="seed"/>.</summary>
    public static void Create(string directory, int seed)
    {
        Directory.CreateDirectory(directory);
        JsonObject configJson = Config();
        WriteJson(directory, Idefics3Config.FileName, configJson);
        Idefics3Config config = Idefics3Config.Parse(configJson.ToJsonString(), Idefics3Config.FileName);
        WriteTokenizer(directory);
        WriteJson(directory, Idefics3ImageProcessorConfig.FileName, new JsonObject
        {
            ["image_processor_type"] = Idefics3ImageProcessorConfig.ProcessorType,
            ["processor_class"] = "Idefics3Processor",
            ["do_convert_rgb"] = true,
            ["do_resize"] = true,
            ["size"] = new JsonObject { ["longest_edge"] = ImageSize },
            ["resample"] = 1,
            ["do_image_splitting"] = false,
            ["max_image_size"] = new JsonObject { ["longest_edge"] = ImageSize },
            ["do_rescale"] = true,
            ["rescale_factor"] = 1.0 / 255,
            ["do_normalize"] = true,
            ["image_mean"] = new JsonArray(0.5, 0.5, 0.5),
            ["image_std"] = new JsonArray(0.5, 0.5, 0.5),
            ["do_pad"] = true,
        });
        WriteJson(directory, Idefics3Prompt.FileName, new JsonObject
        {
            ["image_seq_len"] = config.ImageSeqLen,
            ["processor_class"] = "Idefics3Processor",
        });
        RandomWeights(config, new Random(seed))
            .Save(Path.Combine(directory, SafeTensorsReader.SingleFileName));
    }

    /// <summary>
    /// Writes tokenizer.json (see <see cref="Tokenizer"/>) and tokenizer_config.json (SmolVLM-Instruct's
    /// chat template, eos, pad and bos) into <paramref name="directory"/>; the sample builder's tests
    /// pair them with their own processor files.
    /// </summary>
    internal static void WriteTokenizer(string directory)
    {
        WriteJson(directory, "tokenizer.json", Tokenizer());
        WriteJson(directory, VlmProcessor.TokenizerConfigFileName, new JsonObject
        {
            ["bos_token"] = ImStart,
            ["eos_token"] = EndOfUtterance,
            ["pad_token"] = Pad,
            ["chat_template"] = ChatTemplate,
            ["model_max_length"] = MaxPositions,
            ["tokenizer_class"] = "GPT2Tokenizer",
        });
    }

    private static void WriteJson(string directory, string name, JsonNode node) =>
        File.WriteAllText(Path.Combine(directory, name), node.ToJsonString(Indented) + "\n");

    private static JsonObject Config() => new()
    {
        ["architectures"] = new JsonArray("Idefics3ForConditionalGeneration"),
        ["model_type"] = "idefics3",
        ["image_token_id"] = TokenId(Idefics3Prompt.ImageToken),
        ["scale_factor"] = ScaleFactor,
        ["tie_word_embeddings"] = false,
        ["torch_dtype"] = "float32",
        ["vision_config"] = new JsonObject
        {
            ["model_type"] = "idefics3",
            ["hidden_size"] = VisionHidden,
            ["intermediate_size"] = VisionIntermediate,
            ["num_hidden_layers"] = VisionLayers,
            ["num_attention_heads"] = VisionHeads,
            ["num_channels"] = 3,
            ["image_size"] = ImageSize,
            ["patch_size"] = PatchSize,
            ["hidden_act"] = "gelu_pytorch_tanh",
            ["layer_norm_eps"] = 1e-6,
            ["attention_dropout"] = 0.0,
            ["initializer_range"] = InitStd,
        },
        ["text_config"] = new JsonObject
        {
            ["model_type"] = "llama",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = TextHidden,
            ["intermediate_size"] = TextIntermediate,
            ["num_hidden_layers"] = TextLayers,
            ["num_attention_heads"] = TextHeads,
            ["num_key_value_heads"] = TextKeyValueHeads,
            ["head_dim"] = TextHidden / TextHeads,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = MaxPositions,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0,
            ["rope_scaling"] = null,
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["mlp_bias"] = false,
            ["tie_word_embeddings"] = false,
            ["bos_token_id"] = TokenId(ImStart),
            ["eos_token_id"] = TokenId(EndOfUtterance),
            ["pad_token_id"] = TokenId(Pad),
            ["initializer_range"] = InitStd,
        },
    };

    /// <summary>
    /// Weights as transformers initialises a fresh Idefics3ForConditionalGeneration: Linear, Conv2d and
    /// Embedding weights N(0, 0.02²), biases 0, LayerNorm weights 1 and biases 0, RMSNorm weights 1.
    /// Not <see cref="Weights.Random"/>, which draws every tensor, norms included, from N(0, 0.02²): norm
    /// weights near 0 would scale each layer's signal down fifty-fold and leave training little to move.
    /// Names and order are transformers' state dict: vision embeddings, encoder layers (self_attn,
    /// layer_norm1, mlp, layer_norm2), post_layernorm, connector, text model, lm_head.
    /// </summary>
    private static SafeTensorsWriter RandomWeights(Idefics3Config config, Random random)
    {
        VisionConfig v = config.Vision;
        TextConfig t = config.Text;
        var writer = new SafeTensorsWriter();
        void Normal(string name, params long[] shape) => writer.Add(name, NormalValues(random, shape), shape);
        void Filled(string name, float value, params long[] shape) =>
            writer.Add(name, Enumerable.Repeat(value, (int)shape.Aggregate(1L, (a, d) => a * d)).ToArray(), shape);
        void LayerNorm(string name, long size)
        {
            Filled($"{name}.weight", 1f, size);
            Filled($"{name}.bias", 0f, size);
        }
        void Linear(LinearShape linear)
        {
            Normal($"{linear.Name}.weight", linear.OutFeatures, linear.InFeatures);
            if (linear.HasBias)
            {
                Filled($"{linear.Name}.bias", 0f, linear.OutFeatures);
            }
        }

        Dictionary<string, LinearShape> linears = Idefics3Model.LinearShapes(config).ToDictionary(l => l.Name);
        const string vision = "model.vision_model";
        Normal($"{vision}.embeddings.patch_embedding.weight", v.HiddenSize, v.NumChannels, v.PatchSize, v.PatchSize);
        Filled($"{vision}.embeddings.patch_embedding.bias", 0f, v.HiddenSize);
        Normal($"{vision}.embeddings.position_embedding.weight", v.NumPatches, v.HiddenSize);
        for (int i = 0; i < v.NumHiddenLayers; i++)
        {
            string layer = $"{vision}.encoder.layers.{i}";
            foreach (string projection in new[] { "k_proj", "v_proj", "q_proj", "out_proj" })
            {
                Linear(linears[$"{layer}.self_attn.{projection}"]);
            }
            LayerNorm($"{layer}.layer_norm1", v.HiddenSize);
            Linear(linears[$"{layer}.mlp.fc1"]);
            Linear(linears[$"{layer}.mlp.fc2"]);
            LayerNorm($"{layer}.layer_norm2", v.HiddenSize);
        }
        LayerNorm($"{vision}.post_layernorm", v.HiddenSize);
        Linear(linears["model.connector.modality_projection.proj"]);

        const string text = "model.text_model";
        Normal($"{text}.embed_tokens.weight", t.VocabSize, t.HiddenSize);
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            string layer = $"{text}.layers.{i}";
            foreach (string projection in new[] { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" })
            {
                Linear(linears[$"{layer}.{projection}"]);
            }
            Filled($"{layer}.input_layernorm.weight", 1f, t.HiddenSize);
            Filled($"{layer}.post_attention_layernorm.weight", 1f, t.HiddenSize);
        }
        Filled($"{text}.norm.weight", 1f, t.HiddenSize);
        Normal("lm_head.weight", t.VocabSize, t.HiddenSize);
        return writer;
    }

    /// <summary>N(0, <see cref="InitStd"/>²) by Box–Muller, one normal sample from two uniforms.</summary>
    private static float[] NormalValues(Random random, long[] shape)
    {
        var values = new float[shape.Aggregate(1L, (a, d) => a * d)];
        for (int i = 0; i < values.Length; i++)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            values[i] = (float)(InitStd * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return values;
    }

    /// <summary>
    /// tokenizer.json of a byte-level BPE with no merges: the vocabulary maps GPT-2's byte symbols
    /// (bytes_to_unicode) to the byte values, so every UTF-8 byte is one token whose id is the byte.
    /// </summary>
    private static JsonObject Tokenizer()
    {
        var vocabulary = new JsonObject();
        for (int b = 0; b < 256; b++)
        {
            vocabulary[ByteLevelAlphabet.Symbol((byte)b).ToString()] = b;
        }
        var added = new JsonArray();
        foreach (string token in AddedTokens)
        {
            added.Add((JsonNode)new JsonObject
            {
                ["id"] = TokenId(token), ["content"] = token, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            });
        }
        JsonObject ByteLevel() => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(),
            ["post_processor"] = null,
            ["decoder"] = ByteLevel(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocabulary,
                ["merges"] = new JsonArray(),
            },
        };
    }
}
