namespace NativeVlm.Vision;

/// <summary>
/// 8-bit pixels row by row with the channels interleaved, [height, width, channels]: the layout of a
/// uint8 numpy image, which is what transformers' image processors hand from step to step.
/// </summary>
public sealed class Raster
{
    public Raster(int width, int height, int channels, byte[] pixels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channels);
        if (pixels.LongLength != (long)width * height * channels)
        {
            throw new ArgumentException($"{pixels.LongLength} bytes do not hold {height}x{width}x{channels} pixels", nameof(pixels));
        }
        Width = width;
        Height = height;
        Channels = channels;
        Pixels = pixels;
    }

    public int Width { get; }

    public int Height { get; }

    public int Channels { get; }

    /// <summary>[height, width, channels].</summary>
    public byte[] Pixels { get; }

    public int RowBytes => Width * Channels;

    public static Raster Zeros(int width, int height, int channels) =>
        new(width, height, channels, new byte[checked(width * height * channels)]);

    /// <summary>The rectangle [x0, x1) × [y0, y1), as numpy's <c>image[y0:y1, x0:x1, :]</c>.</summary>
    public Raster Crop(int x0, int y0, int x1, int y1)
    {
        if (x0 < 0 || y0 < 0 || x1 > Width || y1 > Height || x0 >= x1 || y0 >= y1)
        {
            throw new ArgumentOutOfRangeException(nameof(x0), $"crop [{x0}, {x1}) x [{y0}, {y1}) is not inside {Width}x{Height}");
        }
        var crop = Zeros(x1 - x0, y1 - y0, Channels);
        for (int y = y0; y < y1; y++)
        {
            Pixels.AsSpan(y * RowBytes + x0 * Channels, crop.RowBytes).CopyTo(crop.Pixels.AsSpan((y - y0) * crop.RowBytes));
        }
        return crop;
    }
}
