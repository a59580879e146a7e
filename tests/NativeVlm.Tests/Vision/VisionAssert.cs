using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>Bit-for-bit comparisons that say where the first difference is and how many there are.</summary>
internal static class VisionAssert
{
    public static void BitEqual(float[] expected, float[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        int differences = 0, first = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
            {
                differences++;
                first = first < 0 ? i : first;
            }
        }
        Assert.True(differences == 0,
            $"{what}: {differences} of {expected.Length} values differ; first at {first}: {actual[Math.Max(first, 0)]:R}, expected {expected[Math.Max(first, 0)]:R}");
    }

    public static void BytesEqual(byte[] expected, byte[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} bytes, expected {expected.Length}");
        int differences = 0, first = -1, largest = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] != actual[i])
            {
                differences++;
                first = first < 0 ? i : first;
                largest = Math.Max(largest, Math.Abs(expected[i] - actual[i]));
            }
        }
        Assert.True(differences == 0,
            $"{what}: {differences} of {expected.Length} bytes differ (by up to {largest}); first at {first}: {actual[Math.Max(first, 0)]}, expected {expected[Math.Max(first, 0)]}");
    }

    /// <summary>A raster against a uint8 tensor of shape [H, W, C], or [H, W] for one channel.</summary>
    public static void RasterEqual(long[] expectedShape, byte[] expected, Raster actual, string what)
    {
        long[] shape = expectedShape.Length == 2 ? [expectedShape[0], expectedShape[1], 1] : expectedShape;
        Assert.True(shape.SequenceEqual(new long[] { actual.Height, actual.Width, actual.Channels }),
            $"{what}: {actual.Height}x{actual.Width}x{actual.Channels}, expected [{string.Join(", ", expectedShape)}]");
        BytesEqual(expected, actual.Pixels, what);
    }
}
