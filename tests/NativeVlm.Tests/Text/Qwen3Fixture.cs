using System.Text.Json;
using NativeVlm.Text;

namespace NativeVlm.Tests;

/// <summary>
/// The qwen3-tokenizer fixture: the real Qwen3 tokenizer.json and tokenizer_config.json, ids of tricky
/// strings from an independent implementation, and chat-template renders (see its README). The
/// tokenizer is read once (a second or two) and shared by the test classes.
/// </summary>
internal static class Qwen3Fixture
{
    public const string Folder = "qwen3-tokenizer";

    private static readonly Lazy<ByteLevelBpeTokenizer> LazyTokenizer = new(() => ByteLevelBpeTokenizer.Load(TokenizerPath));

    public static string Directory => Fixtures.Path(Folder);

    public static string TokenizerPath => Fixtures.Path(Folder, ByteLevelBpeTokenizer.FileName);

    public static ByteLevelBpeTokenizer Tokenizer => LazyTokenizer.Value;

    public static JsonElement ReadJson(string file)
    {
        using JsonDocument document = JsonDocument.Parse(File.ReadAllText(Fixtures.Path(Folder, file)));
        return document.RootElement.Clone();
    }

    public static int[] Ids(JsonElement array) => array.EnumerateArray().Select(id => id.GetInt32()).ToArray();

    /// <summary>A JSON chat message: content a string, or a list of {type, text} items.</summary>
    public static ChatMessage Message(JsonElement message)
    {
        string role = message.GetProperty("role").GetString()!;
        JsonElement content = message.GetProperty("content");
        return content.ValueKind == JsonValueKind.String
            ? new ChatMessage(role, content.GetString()!)
            : new ChatMessage(role, content.EnumerateArray()
                .Select(part => new ChatPart(part.GetProperty("type").GetString()!, part.TryGetProperty("text", out JsonElement text) ? text.GetString() : null))
                .ToList());
    }
}
