using NativeVlm.Vision;

namespace NativeVlm.Batches;

/// <summary>
/// One sample's frames as Idefics3ImageProcessor gives them for a batch of one, channels first:
/// pixel values [frames, 3, height, width] and the pixel attention mask [frames, height, width] (1 on
/// real pixels), and per image the rows and columns of tiles it was split into. The collator pads
/// these to the batch's largest, which is what processing the batch at once gives, bit for bit.
/// </summary>
public sealed record SampleImages(float[] PixelValues, byte[] PixelAttentionMask, int Frames, int Height, int Width, IReadOnlyList<int> Rows, IReadOnlyList<int> Cols)
{
    /// <summary>The only sample of a batch of one.</summary>
    public static SampleImages From(ProcessedImages processed)
    {
        if (processed.Batch != 1)
        {
            throw new ArgumentException($"a batch of {processed.Batch} samples; one sample's images are processed alone", nameof(processed));
        }
        return new SampleImages(processed.PixelValues, processed.PixelAttentionMask, processed.Slots, processed.Height, processed.Width,
            processed.Rows[0], processed.Cols[0]);
    }
}
