namespace NativeVlm.Data;

public enum ContentKind
{
    Text,
    Image,
}

/// <summary>
/// One item of a message's content, as Hugging Face writes it: <c>{"type": "text", "text": "..."}</c>,
/// or <c>{"type": "image"}</c>, a placeholder for the row's next image (images are matched to
/// placeholders in order).
/// </summary>
public sealed record ContentItem(ContentKind Kind, string? Text)
{
    public static ContentItem ImagePlaceholder { get; } = new(ContentKind.Image, null);

    public static ContentItem FromText(string text) => new(ContentKind.Text, text);
}

/// <summary>One chat message: a role ("user", "assistant", "system") and its content items in order.</summary>
public sealed record ChatMessage(string Role, IReadOnlyList<ContentItem> Content)
{
    public int ImageCount => Content.Count(item => item.Kind == ContentKind.Image);

    /// <summary>The message's text items joined, without image placeholders.</summary>
    public string Text => string.Concat(Content.Where(item => item.Kind == ContentKind.Text).Select(item => item.Text));

    public static int CountImages(IEnumerable<ChatMessage> messages) => messages.Sum(message => message.ImageCount);
}

/// <summary>
/// An image as Hugging Face's Image feature stores it: the encoded file's bytes (PNG, JPEG, ...; not
/// decoded here) and the path it came from, which is often null in parquet.
/// </summary>
public sealed record DatasetImage(byte[] Bytes, string? Path);
