namespace NativeVlm.Text;

/// <summary>
/// One item of a multimodal message's content, as chat templates see it: {"type": "image"} or
/// {"type": "text", "text": ...}.
/// </summary>
public sealed record ChatPart(string Type, string? Text = null)
{
    public static ChatPart Image { get; } = new("image");

    public static ChatPart FromText(string text) => new("text", text);
}

/// <summary>
/// A chat message for a chat template: a role and a content that is either a plain string (Qwen3's
/// templates) or a list of parts (SmolVLM's, where images sit between texts).
/// </summary>
public sealed record ChatMessage
{
    public ChatMessage(string role, string content) => (Role, Content) = (role, content);

    public ChatMessage(string role, IReadOnlyList<ChatPart> parts) => (Role, Parts) = (role, parts);

    public string Role { get; }

    /// <summary>The content as a string; null when the message has <see cref="Parts"/>.</summary>
    public string? Content { get; }

    /// <summary>The content as a list of parts; null when the message has a string <see cref="Content"/>.</summary>
    public IReadOnlyList<ChatPart>? Parts { get; }
}
