using System.Text;
using System.Text.Json.Nodes;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Vision;

namespace NativeVlm.Tests.Batches;

/// <summary>
/// A snapshot folder for the sample builder without weights: tiny-idefics3's config.json (image_seq_len
/// 4) with a byte-level tokenizer that has no merges, so every byte is one token whose id is the byte
/// (as the tiny fixtures' toy tokenizer: '\n' = 10, printable ASCII = its code point), plus SmolVLM's
/// added tokens and chat template, and an image processor with 32-pixel tiles and a 64-pixel longest edge.
/// </summary>
internal sealed class TinySnapshot : IDisposable
{
    /// <summary>HuggingFaceTB/SmolVLM-Instruct's chat_template.</summary>
    public const string SmolVlmTemplate =
        "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
        + "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
        + "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

    public const string ImStart = "<|im_start|>", EndOfUtterance = "<end_of_utterance>", Pad = "<pad>";

    /// <summary>Added tokens in id order from 256: the global image, the 4 × 4 row/column tokens, then the rest.</summary>
    private static readonly string[] AddedTokens =
    [
        Idefics3Prompt.GlobalImageToken,
        .. Enumerable.Range(1, 4).SelectMany(r => Enumerable.Range(1, 4).Select(c => $"<row_{r}_col_{c}>")),
        Idefics3Prompt.FakeImageToken, Idefics3Prompt.ImageToken, ImStart, EndOfUtterance, Pad,
    ];

    private readonly TempDirectory _folder = new();

    public TinySnapshot(bool doImageSplitting = true)
    {
        JsonObject config = JsonNode.Parse(File.ReadAllText(Fixtures.Path("tiny-idefics3", "config.json")))!.AsObject();
        config["image_token_id"] = Id(Idefics3Prompt.ImageToken);
        File.WriteAllText(_folder.Path("config.json"), config.ToJsonString());
        File.WriteAllText(_folder.Path("tokenizer.json"), Tokenizer().ToJsonString());
        File.WriteAllText(_folder.Path("tokenizer_config.json"), new JsonObject
        {
            ["chat_template"] = SmolVlmTemplate, ["eos_token"] = EndOfUtterance, ["pad_token"] = Pad, ["bos_token"] = ImStart,
        }.ToJsonString());
        File.WriteAllText(_folder.Path("preprocessor_config.json"), new JsonObject
        {
            ["image_processor_type"] = "Idefics3ImageProcessor",
            ["do_image_splitting"] = doImageSplitting,
            ["max_image_size"] = new JsonObject { ["longest_edge"] = 32 },
            ["size"] = new JsonObject { ["longest_edge"] = 64 },
        }.ToJsonString());
        File.WriteAllText(_folder.Path("processor_config.json"), new JsonObject { ["image_seq_len"] = 4 }.ToJsonString());
        Processor = VlmProcessor.Load(Folder);
    }

    public string Folder => _folder.Root;

    public string Path(string name) => _folder.Path(name);

    public VlmProcessor Processor { get; }

    public static int Id(string addedToken)
    {
        int index = Array.IndexOf(AddedTokens, addedToken);
        return index >= 0 ? 256 + index : throw new ArgumentException($"{addedToken} is not an added token");
    }

    /// <summary>The ids this tokenizer must give: an added token's id, else one id per UTF-8 byte.</summary>
    public static int[] Ids(string text)
    {
        var ids = new List<int>();
        int i = 0;
        while (i < text.Length)
        {
            string? token = AddedTokens.FirstOrDefault(t => text.AsSpan(i).StartsWith(t, StringComparison.Ordinal));
            if (token is not null)
            {
                ids.Add(Id(token));
                i += token.Length;
                continue;
            }
            int length = char.IsHighSurrogate(text[i]) ? 2 : 1;
            ids.AddRange(Encoding.UTF8.GetBytes(text.Substring(i, length)).Select(b => (int)b));
            i += length;
        }
        return [.. ids];
    }

    /// <summary>An RGB PNG of a gradient, so that every row and column differs.</summary>
    public static byte[] Png(int width, int height) =>
        TestPng.Encode(width, height, 8, TestPng.Rgb,
            Enumerable.Range(0, width * height * 3).Select(i => (i * 7 + i / (width * 3) * 13) % 256).ToArray());

    public static DatasetImage Image(int width, int height) => new(Png(width, height), null);

    private static JsonObject Tokenizer()
    {
        var vocabulary = new JsonObject();
        foreach ((int b, char symbol) in ByteSymbols())
        {
            vocabulary[symbol.ToString()] = b;
        }
        var added = new JsonArray();
        foreach (string token in AddedTokens)
        {
            added.Add(new JsonObject
            {
                ["id"] = Id(token), ["content"] = token, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            });
        }
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = byteLevel,
            ["post_processor"] = null,
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocabulary, ["merges"] = new JsonArray() },
        };
    }

    /// <summary>GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others for 256 + n.</summary>
    private static IEnumerable<(int Byte, char Symbol)> ByteSymbols()
    {
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            yield return (b, printable ? (char)b : (char)next++);
        }
    }

    public void Dispose() => _folder.Dispose();
}
