namespace NativeVlm.Vision;

/// <summary>
/// What Idefics3ImageProcessor returns for a batch, channels first: pixel_values
/// [batch, slots, 3, height, width] and pixel_attention_mask [batch, slots, height, width] (1 on
/// real pixels; a sample with fewer frames than the batch's most has all-zero slots), and per sample,
/// per image, the rows and columns of tiles it was split into (0 and 0 when it was not split).
/// </summary>
public sealed record ProcessedImages(
    float[] PixelValues,
    int[] PixelShape,
    byte[] PixelAttentionMask,
    IReadOnlyList<IReadOnlyList<int>> Rows,
    IReadOnlyList<IReadOnlyList<int>> Cols)
{
    public int Batch => PixelShape[0];

    public int Slots => PixelShape[1];

    public int Height => PixelShape[3];

    public int Width => PixelShape[4];
}
