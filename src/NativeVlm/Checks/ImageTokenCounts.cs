using NativeVlm.Text;
using NativeVlm.Vision;

namespace NativeVlm.Checks;

/// <summary>
/// What one image of a given size becomes under a snapshot's processor settings: the tiles
/// Idefics3ImageProcessor cuts it into (rows × cols, plus the global image; 0 × 0 when it is not split),
/// the image tokens Idefics3Prompt expands it to, and, with the snapshot's tokenizer, the exact token
/// counts of that expansion and of a one-turn user prompt holding the image.
/// </summary>
/// <param name="ImageTokens">Occurrences of the image token string in the expansion: frames × image_seq_len.</param>
/// <param name="ExpansionTokens">Tokens of the whole expansion (image tokens, row/column markers, around-image tokens, newlines); null without a tokenizer.</param>
/// <param name="PromptTokens">Tokens of <see cref="ImageTokenCounts.UserText"/> after an image, rendered by the chat template with the generation prompt and expanded; null without tokenizer or template.</param>
public sealed record ImageTokenCount(int Width, int Height, int Rows, int Cols, int Frames, int ImageTokens, int? ExpansionTokens, int? PromptTokens);

public static class ImageTokenCounts
{
    /// <summary>The text of the user turn whose prompt length is counted.</summary>
    public const string UserText = "Describe this image.";

    /// <summary>A side every processor setting resizes, shown next to the largest size the settings allow.</summary>
    public const int SquareSide = 512;

    /// <summary>
    /// The sizes shown when none is asked for: the largest the settings produce (size.longest_edge
    /// square, or the fixed size), and a square <see cref="SquareSide"/> image.
    /// </summary>
    public static IReadOnlyList<(int Width, int Height)> RepresentativeSizes(Idefics3ImageProcessorConfig settings)
    {
        (int width, int height) largest = settings.LongestEdge is int edge
            ? (edge, edge)
            : (settings.Size!.Value.Width, settings.Size!.Value.Height);
        return largest == (SquareSide, SquareSide) ? [largest] : [largest, (SquareSide, SquareSide)];
    }

    /// <summary>
    /// Runs the snapshot's image processor on a blank RGB image of <paramref name="width"/> ×
    /// <paramref name="height"/> (tiles depend on the size only) and expands the prompt for the result.
    /// </summary>
    public static ImageTokenCount Count(SnapshotProcessor processor, int width, int height)
    {
        Idefics3ImageProcessor imageProcessor = processor.ImageProcessor
            ?? throw new InvalidOperationException($"{processor.Directory} has no {Idefics3ImageProcessorConfig.FileName}");
        var image = new DecodedImage($"blank {width}×{height} image", ImageMode.RGB, Raster.Zeros(width, height, 3));
        ProcessedImages processed = imageProcessor.Process([[image]]);
        int rows = processed.Rows[0][0], cols = processed.Cols[0][0];
        Idefics3Prompt prompt = processor.Prompt;
        string expansion = prompt.ImageString(rows, cols);
        int imageTokens = expansion.Split(prompt.Tokens.Image).Length - 1;

        int? expansionTokens = processor.Tokenizer?.Encode(expansion, addSpecialTokens: false).Length;
        int? promptTokens = null;
        if (processor.Tokenizer != null && processor.Template != null)
        {
            // A template that does not place exactly one image token is a finding (SnapshotFindings); no prompt length then.
            string text = processor.Template.Render([UserTurn()], addGenerationPrompt: true);
            promptTokens = text.Split(prompt.Tokens.Image).Length == 2
                ? processor.Tokenizer.Encode(prompt.Expand(text, [rows], [cols]), addSpecialTokens: false).Length
                : null;
        }
        return new ImageTokenCount(width, height, rows, cols, processed.Slots, imageTokens, expansionTokens, promptTokens);
    }

    /// <summary>A user turn of one image followed by <see cref="UserText"/>, as SmolVLM's templates take it.</summary>
    public static ChatMessage UserTurn() => new("user", [ChatPart.Image, ChatPart.FromText(UserText)]);
}
