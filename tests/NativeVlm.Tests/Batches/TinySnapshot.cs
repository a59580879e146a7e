using System.Text;
using System.Text.Json.Nodes;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Demo;
using NativeVlm.Vision;

namespace NativeVlm.Tests.Batches;

/// <summary>
/// A snapshot folder for the sample builder without weights: tiny-idefics3's config.json (image_seq_len
/// 4) with the demo snapshot's tokenizer files (<see cref="DemoSnapshot.WriteTokenizer"/>: byte-level with
/// no merges, so every byte is one token whose id is the byte, as the tiny fixtures' toy tokenizer: '\n' =
/// 10, printable ASCII = its code point; SmolVLM's added tokens and chat template), and an image processor
/// with 32-pixel tiles and a 64-pixel longest edge.
/// </summary>
internal sealed class TinySnapshot : IDisposable
{
    private readonly TempDirectory _folder = new();

    public TinySnapshot(bool doImageSplitting = true)
    {
        JsonObject config = JsonNode.Parse(File.ReadAllText(Fixtures.Path("tiny-idefics3", "config.json")))!.AsObject();
        config["image_token_id"] = DemoSnapshot.TokenId(Idefics3Prompt.ImageToken);
        File.WriteAllText(_folder.Path("config.json"), config.ToJsonString());
        DemoSnapshot.WriteTokenizer(Folder);
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

    /// <summary>The ids this tokenizer must give: an added token's id, else one id per UTF-8 byte.</summary>
    public static int[] Ids(string text)
    {
        var ids = new List<int>();
        int i = 0;
        while (i < text.Length)
        {
            string? token = DemoSnapshot.AddedTokens.FirstOrDefault(t => text.AsSpan(i).StartsWith(t, StringComparison.Ordinal));
            if (token is not null)
            {
                ids.Add(DemoSnapshot.TokenId(token));
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

    public void Dispose() => _folder.Dispose();
}
