namespace NativeVlm.Vision;

/// <summary>
/// An image that NativeVlm cannot use as Pillow and transformers would: bytes that are corrupt,
/// truncated, of an unsupported kind or over the pixel limit, or a mode the image processor does not
/// take. The message starts with where the image came from (a file path, or a dataset file and
/// row), so that a skipped row can be found.
/// </summary>
public sealed class ImageInputException(string origin, string detail) : Exception($"{origin}: {detail}")
{
    /// <summary>The file, or the dataset file and row, that the image came from.</summary>
    public string Origin { get; } = origin;
}
