using System.Numerics;

namespace NativeVlm.Vision;

/// <summary>
/// Pillow's <c>Image.resize(size, resample)</c> on 8-bit images, bit for bit (Pillow 9.4,
/// src/libImaging/Resample.c and Geometry.c). What Pillow does per mode comes first: an unchanged
/// size is a copy; modes 1 and P are always resized with NEAREST (indices must not be blended);
/// LA and RGBA are premultiplied by alpha, resized, and unpremultiplied.
///
/// The filters are separable: a horizontal pass into an 8-bit image, then a vertical pass. Each
/// output pixel's weights are the filter sampled at the input pixel centres, with the support
/// widened by the downscale factor, normalised to sum 1, and rounded to fixed point with 22
/// fractional bits; a sum starts at one half and is clamped to 0..255 after the shift.
/// </summary>
public static class PillowResize
{
    /// <summary>32 bits less 8 for the result and 2 for overflow: negative lobes push sums below 0 and above 1.</summary>
    private const int PrecisionBits = 32 - 8 - 2;

    public static Raster Resize(Raster image, ImageMode mode, int width, int height, Resample filter)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        if (image.Channels != mode.Channels())
        {
            throw new ArgumentException($"mode {mode.PillowName()} has {mode.Channels()} channels, the image {image.Channels}", nameof(image));
        }
        if (width == image.Width && height == image.Height)
        {
            return new Raster(width, height, image.Channels, (byte[])image.Pixels.Clone());
        }
        if (mode is ImageMode.Bilevel or ImageMode.P || filter == Resample.Nearest)
        {
            return Nearest(image, width, height);
        }
        if (mode is ImageMode.LA or ImageMode.RGBA)
        {
            return Unpremultiply(Separable(Premultiply(image), width, height, FilterOf(filter)));
        }
        return Separable(image, width, height, FilterOf(filter));
    }

    /// <summary>
    /// Geometry.c's ImagingScaleAffine: source coordinates start at half a step and grow by adding
    /// the step (in double, as Pillow accumulates it), truncated to a pixel index.
    /// </summary>
    private static Raster Nearest(Raster image, int width, int height)
    {
        int channels = image.Channels;
        int[] sourceX = NearestIndices(image.Width, width);
        int[] sourceY = NearestIndices(image.Height, height);
        var output = Raster.Zeros(width, height, channels);
        for (int y = 0; y < height; y++)
        {
            if (sourceY[y] < 0)
            {
                continue;
            }
            ReadOnlySpan<byte> inRow = image.Pixels.AsSpan(sourceY[y] * image.RowBytes, image.RowBytes);
            Span<byte> outRow = output.Pixels.AsSpan(y * output.RowBytes, output.RowBytes);
            for (int x = 0; x < width; x++)
            {
                if (sourceX[x] >= 0)
                {
                    inRow.Slice(sourceX[x] * channels, channels).CopyTo(outRow.Slice(x * channels));
                }
            }
        }
        return output;
    }

    /// <summary>The source index of each output index; −1 where it falls outside (Pillow leaves 0 there).</summary>
    private static int[] NearestIndices(int inSize, int outSize)
    {
        // Pillow's box is float; (float)inSize − 0f is exact for every size a raster can have.
        double step = (double)(float)inSize / outSize;
        double position = step * 0.5;
        var indices = new int[outSize];
        for (int i = 0; i < outSize; i++)
        {
            int index = position < 0.0 ? -1 : (int)position;
            indices[i] = index >= 0 && index < inSize ? index : -1;
            position += step;
        }
        return indices;
    }

    private readonly record struct Filter(Func<double, double> Weight, double Support);

    private static Filter FilterOf(Resample filter) => filter switch
    {
        Resample.Box => new Filter(x => x > -0.5 && x <= 0.5 ? 1.0 : 0.0, 0.5),
        Resample.Bilinear => new Filter(Bilinear, 1.0),
        Resample.Hamming => new Filter(Hamming, 1.0),
        Resample.Bicubic => new Filter(Bicubic, 2.0),
        Resample.Lanczos => new Filter(x => -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0, 3.0),
        _ => throw new ArgumentOutOfRangeException(nameof(filter), filter, "not a resampling filter"),
    };

    private static double Bilinear(double x)
    {
        x = Math.Abs(x);
        return x < 1.0 ? 1.0 - x : 0.0;
    }

    private static double Hamming(double x)
    {
        x = Math.Abs(x);
        if (x == 0.0)
        {
            return 1.0;
        }
        if (x >= 1.0)
        {
            return 0.0;
        }
        x *= Math.PI;
        // Pillow writes the window's constants as floats (0.54f, 0.46f).
        return Math.Sin(x) / x * (0.54f + 0.46f * Math.Cos(x));
    }

    /// <summary>Keys' cubic convolution with a = −0.5.</summary>
    private static double Bicubic(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1.0)
        {
            return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        }
        if (x < 2.0)
        {
            return (((x - 5) * x + 8) * x - 4) * a;
        }
        return 0.0;
    }

    private static double Sinc(double x)
    {
        if (x == 0.0)
        {
            return 1.0;
        }
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    /// <summary>
    /// One axis's weights (Resample.c's precompute_coeffs and normalize_coeffs_8bpc): output index i
    /// reads Counts[i] inputs from First[i] with fixed-point Weights[i * KernelSize ..].
    /// </summary>
    private sealed record Coefficients(int[] First, int[] Counts, int[] Weights, int KernelSize);

    private static Coefficients Precompute(int inSize, int outSize, Filter filter)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = filter.Support * filterScale;
        int kernelSize = (int)Math.Ceiling(support) * 2 + 1;
        var first = new int[outSize];
        var counts = new int[outSize];
        var weights = new int[outSize * kernelSize];
        var sampled = new double[kernelSize];
        for (int i = 0; i < outSize; i++)
        {
            double center = (i + 0.5) * scale;
            double inverseScale = 1.0 / filterScale;
            // (int) truncates toward zero as C's cast does; "+ 0.5" is Pillow's rounding.
            int xmin = Math.Max((int)(center - support + 0.5), 0);
            int count = Math.Min((int)(center + support + 0.5), inSize) - xmin;
            double sum = 0.0;
            for (int x = 0; x < count; x++)
            {
                double w = filter.Weight((x + xmin - center + 0.5) * inverseScale);
                sampled[x] = w;
                sum += w;
            }
            for (int x = 0; x < count; x++)
            {
                double k = sum != 0.0 ? sampled[x] / sum : sampled[x];
                weights[i * kernelSize + x] = k < 0
                    ? (int)(-0.5 + k * (1 << PrecisionBits))
                    : (int)(0.5 + k * (1 << PrecisionBits));
            }
            first[i] = xmin;
            counts[i] = count;
        }
        return new Coefficients(first, counts, weights, kernelSize);
    }

    /// <summary>
    /// Resample.c's ImagingResampleInner: the horizontal pass covers only the rows the vertical pass
    /// reads; a pass whose size does not change is skipped.
    /// </summary>
    private static Raster Separable(Raster image, int width, int height, Filter filter)
    {
        Coefficients vertical = Precompute(image.Height, height, filter);
        int firstRow = vertical.First[0];
        int lastRow = vertical.First[height - 1] + vertical.Counts[height - 1];
        Raster current = image;
        int rowOffset = 0;
        if (width != image.Width)
        {
            current = Horizontal(image, firstRow, lastRow - firstRow, Precompute(image.Width, width, filter));
            rowOffset = firstRow;
        }
        if (height != image.Height)
        {
            current = Vertical(current, rowOffset, vertical, height);
        }
        return current;
    }

    private static byte Clip8(int sum) => (byte)Math.Clamp(sum >> PrecisionBits, 0, 255);

    /// <summary>Rows [firstRow, firstRow + rows) of <paramref name="image"/> (1 to 4 channels), resampled along x.</summary>
    private static Raster Horizontal(Raster image, int firstRow, int rows, Coefficients k)
    {
        int channels = image.Channels, width = k.First.Length, kernelSize = k.KernelSize;
        var output = Raster.Zeros(width, rows, channels);
        const int half = 1 << (PrecisionBits - 1);
        for (int y = 0; y < rows; y++)
        {
            ReadOnlySpan<byte> inRow = image.Pixels.AsSpan((y + firstRow) * image.RowBytes, image.RowBytes);
            Span<byte> outRow = output.Pixels.AsSpan(y * output.RowBytes, output.RowBytes);
            for (int x = 0; x < width; x++)
            {
                ReadOnlySpan<int> w = k.Weights.AsSpan(x * kernelSize, k.Counts[x]);
                ReadOnlySpan<byte> window = inRow.Slice(k.First[x] * channels, w.Length * channels);
                int s0 = half, s1 = half, s2 = half, s3 = half;
                for (int i = 0, o = 0; i < w.Length; i++, o += channels)
                {
                    int weight = w[i];
                    s0 += window[o] * weight;
                    if (channels > 1)
                    {
                        s1 += window[o + 1] * weight;
                    }
                    if (channels > 2)
                    {
                        s2 += window[o + 2] * weight;
                    }
                    if (channels > 3)
                    {
                        s3 += window[o + 3] * weight;
                    }
                }
                Span<byte> pixel = outRow.Slice(x * channels, channels);
                pixel[0] = Clip8(s0);
                if (channels > 1)
                {
                    pixel[1] = Clip8(s1);
                }
                if (channels > 2)
                {
                    pixel[2] = Clip8(s2);
                }
                if (channels > 3)
                {
                    pixel[3] = Clip8(s3);
                }
            }
        }
        return output;
    }

    /// <summary>
    /// Resampled along y; the coefficients' rows are counted from <paramref name="rowOffset"/> of the
    /// source. Each output row accumulates whole source rows, a vector of bytes at a time (integer
    /// sums, so the order of the additions does not change the result).
    /// </summary>
    private static Raster Vertical(Raster image, int rowOffset, Coefficients k, int height)
    {
        int rowBytes = image.RowBytes, lanes = Vector<byte>.Count, intLanes = Vector<int>.Count;
        var output = Raster.Zeros(image.Width, height, image.Channels);
        var sums = new int[rowBytes];
        for (int y = 0; y < height; y++)
        {
            Array.Fill(sums, 1 << (PrecisionBits - 1));
            ReadOnlySpan<int> w = k.Weights.AsSpan(y * k.KernelSize, k.Counts[y]);
            for (int i = 0; i < w.Length; i++)
            {
                ReadOnlySpan<byte> inRow = image.Pixels.AsSpan((k.First[y] - rowOffset + i) * rowBytes, rowBytes);
                int weight = w[i];
                var weights = new Vector<int>(weight);
                int b = 0;
                for (; b + lanes <= rowBytes; b += lanes)
                {
                    Vector.Widen(new Vector<byte>(inRow.Slice(b)), out Vector<ushort> low, out Vector<ushort> high);
                    Vector.Widen(low, out Vector<uint> q0, out Vector<uint> q1);
                    Vector.Widen(high, out Vector<uint> q2, out Vector<uint> q3);
                    Span<int> s = sums.AsSpan(b, lanes);
                    (new Vector<int>(s) + Vector.AsVectorInt32(q0) * weights).CopyTo(s);
                    (new Vector<int>(s[intLanes..]) + Vector.AsVectorInt32(q1) * weights).CopyTo(s[intLanes..]);
                    (new Vector<int>(s[(2 * intLanes)..]) + Vector.AsVectorInt32(q2) * weights).CopyTo(s[(2 * intLanes)..]);
                    (new Vector<int>(s[(3 * intLanes)..]) + Vector.AsVectorInt32(q3) * weights).CopyTo(s[(3 * intLanes)..]);
                }
                for (; b < rowBytes; b++)
                {
                    sums[b] += inRow[b] * weight;
                }
            }
            Span<byte> outRow = output.Pixels.AsSpan(y * rowBytes, rowBytes);
            for (int b = 0; b < rowBytes; b++)
            {
                outRow[b] = Clip8(sums[b]);
            }
        }
        return output;
    }

    /// <summary>Pillow's RGBA → RGBa (and LA → La): colour × alpha / 255, rounded; alpha is the last channel.</summary>
    internal static Raster Premultiply(Raster image)
    {
        int channels = image.Channels;
        byte[] src = image.Pixels;
        var dst = new byte[src.Length];
        for (int p = 0; p < src.Length; p += channels)
        {
            int alpha = src[p + channels - 1];
            for (int c = 0; c < channels - 1; c++)
            {
                dst[p + c] = MulDiv255(src[p + c], alpha);
            }
            dst[p + channels - 1] = (byte)alpha;
        }
        return new Raster(image.Width, image.Height, channels, dst);
    }

    /// <summary>Pillow's RGBa → RGBA: colour × 255 / alpha, truncated and clamped; alpha 0 and 255 leave colour as it is.</summary>
    internal static Raster Unpremultiply(Raster image)
    {
        int channels = image.Channels;
        byte[] src = image.Pixels;
        var dst = new byte[src.Length];
        for (int p = 0; p < src.Length; p += channels)
        {
            int alpha = src[p + channels - 1];
            for (int c = 0; c < channels - 1; c++)
            {
                dst[p + c] = alpha is 0 or 255 ? src[p + c] : (byte)Math.Min(255 * src[p + c] / alpha, 255);
            }
            dst[p + channels - 1] = (byte)alpha;
        }
        return new Raster(image.Width, image.Height, channels, dst);
    }

    /// <summary>Pillow's MULDIV255: a × b / 255 rounded to nearest, exactly, for a, b in 0..255.</summary>
    internal static byte MulDiv255(int a, int b)
    {
        int t = a * b + 128;
        return (byte)(((t >> 8) + t) >> 8);
    }
}
