using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using NativeVlm.Batches;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Text;
using NativeVlm.Vision;

namespace NativeVlm.Tests.Stitching;

/// <summary>
/// The stitch-sources fixture's two snapshots copied into a temporary folder with the files a real
/// SmolVLM2 and Qwen3 snapshot carry and the fixture leaves out: for smolvlm2/, SmolVLM2's
/// preprocessor_config.json (SmolVLMImageProcessor, tiles of the vision image_size, longest edge
/// twice that) and processor_config.json (image_seq_len from config.json); for qwen3/, a byte-level
/// tokenizer.json (each UTF-8 byte one token whose id is the byte, no merges) with the reserved tokens
/// of stitch.json at their ids as added tokens, and a tokenizer_config.json naming stitch.json's eos token.
/// </summary>
internal sealed class StitchSources : IDisposable
{
    public const string Fixture = "stitch-sources";

    /// <summary>'&lt;' and '|' written as they are, as tokenizers' files hold them (System.Text.Json escapes them by default).</summary>
    private static readonly JsonSerializerOptions Unescaped = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly TempDirectory _dir = new();

    public StitchSources()
    {
        Recipe = JsonNode.Parse(File.ReadAllText(Fixtures.Path(Fixture, "stitch.json")))!.AsObject();
        CopyFolder(Fixtures.Path(Fixture, (string)Recipe["snapshots"]!["smolvlm2"]!["folder"]!), Vision);
        CopyFolder(Fixtures.Path(Fixture, (string)Recipe["snapshots"]!["qwen3"]!["folder"]!), Text);
        WriteVisionProcessorFiles();
        WriteQwen3Tokenizer();
    }

    /// <summary>stitch.json.</summary>
    public JsonObject Recipe { get; }

    public string Vision => _dir.Path("smolvlm2");

    public string Text => _dir.Path("qwen3");

    public string Path(string name) => _dir.Path(name);

    /// <summary>Qwen3's reserved tokens and their ids, as stitch.json lists them.</summary>
    public IReadOnlyDictionary<string, int> ReservedTokens =>
        Recipe["snapshots"]!["qwen3"]!["reserved_tokens"]!.AsObject().ToDictionary(p => p.Key, p => (int)p.Value!);

    public string EosToken => (string)Recipe["eos_token"]!["name"]!;

    public int EosTokenId => (int)Recipe["eos_token"]!["id"]!;

    public string ImageToken => (string)Recipe["image_token"]!["name"]!;

    public int ImageTokenId => (int)Recipe["image_token"]!["id"]!;

    /// <summary>Copies every file of <paramref name="from"/> into <paramref name="to"/> (created).</summary>
    public static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.EnumerateFiles(from))
        {
            File.Copy(file, System.IO.Path.Combine(to, System.IO.Path.GetFileName(file)), overwrite: true);
        }
    }

    /// <summary>Rewrites <paramref name="snapshot"/>'s model.safetensors with <paramref name="name"/>'s bytes taken from <paramref name="donor"/>.</summary>
    public static void ReplaceTensor(string snapshot, string name, string donor)
    {
        var writer = new SafeTensorsWriter();
        using (SafeTensorsReader target = SafeTensorsReader.Open(snapshot), source = SafeTensorsReader.Open(donor))
        {
            foreach (string tensor in target.Names)
            {
                SafeTensorsReader from = tensor == name ? source : target;
                SafeTensorInfo info = from.GetInfo(tensor);
                writer.AddRaw(tensor, info.DType, info.Shape, from.GetBytes(tensor));
            }
        }
        writer.Save(System.IO.Path.Combine(snapshot, SafeTensorsReader.SingleFileName));
    }

    private void WriteVisionProcessorFiles()
    {
        Idefics3Config config = Idefics3Config.Load(Vision);
        int tile = config.Vision.ImageSize;
        File.WriteAllText(System.IO.Path.Combine(Vision, Idefics3ImageProcessorConfig.FileName), new JsonObject
        {
            ["image_processor_type"] = Idefics3ImageProcessorConfig.SmolVlmProcessorType,
            ["processor_class"] = "SmolVLMProcessor",
            ["do_convert_rgb"] = true,
            ["do_resize"] = true,
            ["size"] = new JsonObject { ["longest_edge"] = 2 * tile },
            ["resample"] = 1,
            ["do_image_splitting"] = true,
            ["max_image_size"] = new JsonObject { ["longest_edge"] = tile },
            ["do_rescale"] = true,
            ["rescale_factor"] = 1.0 / 255,
            ["do_normalize"] = true,
            ["image_mean"] = new JsonArray(0.5, 0.5, 0.5),
            ["image_std"] = new JsonArray(0.5, 0.5, 0.5),
            ["do_pad"] = true,
            ["video_sampling"] = new JsonObject { ["fps"] = 1, ["max_frames"] = 64, ["video_size"] = new JsonObject { ["longest_edge"] = tile } },
        }.ToJsonString());
        File.WriteAllText(System.IO.Path.Combine(Vision, Idefics3Prompt.FileName),
            new JsonObject { ["image_seq_len"] = config.ImageSeqLen, ["processor_class"] = "SmolVLMProcessor" }.ToJsonString());
    }

    private void WriteQwen3Tokenizer()
    {
        // Hugging Face numbers added tokens after the vocabulary, in order: the vocabulary fills every id
        // below the first reserved one (the bytes, then two-letter pieces no merge produces), and added
        // tokens fill the ids from there to the last reserved one (gaps, Qwen3's other reserved tokens, as fillers).
        IReadOnlyDictionary<string, int> reserved = ReservedTokens;
        int firstReserved = reserved.Values.Min(), lastReserved = reserved.Values.Max();
        var vocabulary = new JsonObject();
        char Symbol(int b) => ByteLevelAlphabet.Symbol((byte)b);
        for (int id = 0; id < firstReserved; id++)
        {
            vocabulary[id < 256 ? Symbol(id).ToString() : $"{Symbol('a')}{Symbol('a' + id - 256)}"] = id;
        }
        Dictionary<int, string> byId = reserved.ToDictionary(t => t.Value, t => t.Key);
        var added = new JsonArray();
        for (int id = firstReserved; id <= lastReserved; id++)
        {
            added.Add((JsonNode)new JsonObject
            {
                ["id"] = id, ["content"] = byId.GetValueOrDefault(id, $"<|reserved_{id}|>"), ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
        }
        JsonObject ByteLevel() => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = true };
        File.WriteAllText(System.IO.Path.Combine(Text, "tokenizer.json"), new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(),
            ["post_processor"] = null,
            ["decoder"] = ByteLevel(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "", ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocabulary,
                ["merges"] = new JsonArray(),
            },
        }.ToJsonString(Unescaped));
        File.WriteAllText(System.IO.Path.Combine(Text, VlmProcessor.TokenizerConfigFileName), new JsonObject
        {
            ["bos_token"] = null,
            ["eos_token"] = EosToken,
            ["errors"] = "replace",
            ["model_max_length"] = 40960,
            ["tokenizer_class"] = "Qwen2Tokenizer",
            ["chat_template"] = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}",
        }.ToJsonString(Unescaped));
    }

    public void Dispose() => _dir.Dispose();
}
