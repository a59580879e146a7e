using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using NativeVlm.Vision;

namespace NativeVlm.Tests;

/// <summary>
/// A PNG writer for tests: any bit depth and colour type, Adam7 or not, each row with the filter the
/// caller picks, so that the decoder's unfiltering and unpacking meet every combination.
/// </summary>
internal static class TestPng
{
    public const byte Grey = 0, Rgb = 2, Palette = 3, GreyAlpha = 4, Rgba = 6;

    /// <param name="samples">One value per sample, row by row (0 .. 2^bitDepth − 1).</param>
    public static byte[] Encode(int width, int height, int bitDepth, byte colourType, int[] samples,
        byte[]? palette = null, bool interlaced = false, Func<int, byte>? filterOfRow = null)
    {
        int channels = colourType switch { Grey or Palette => 1, GreyAlpha => 2, Rgb => 3, _ => 4 };
        filterOfRow ??= row => (byte)(row % 5);
        var raw = new MemoryStream();
        int rowIndex = 0;
        foreach ((int x0, int y0, int dx, int dy) in interlaced ? Adam7 : [(0, 0, 1, 1)])
        {
            int passWidth = (width - x0 + dx - 1) / dx, passHeight = (height - y0 + dy - 1) / dy;
            if (passWidth <= 0 || passHeight <= 0)
            {
                continue;
            }
            byte[] previous = new byte[(passWidth * channels * bitDepth + 7) / 8];
            for (int y = 0; y < passHeight; y++)
            {
                var bits = new List<int>();
                for (int x = 0; x < passWidth; x++)
                {
                    for (int c = 0; c < channels; c++)
                    {
                        bits.Add(samples[((y0 + y * dy) * width + x0 + x * dx) * channels + c]);
                    }
                }
                byte[] packed = Pack(bits, bitDepth, previous.Length);
                byte filter = filterOfRow(rowIndex++);
                raw.WriteByte(filter);
                raw.Write(Filter(filter, packed, previous, Math.Max(1, channels * bitDepth / 8)));
                previous = packed;
            }
        }
        var idat = new MemoryStream();
        using (var zlib = new ZLibStream(idat, CompressionLevel.Optimal, leaveOpen: true))
        {
            zlib.Write(raw.ToArray());
        }
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = (byte)bitDepth;
        header[9] = colourType;
        header[12] = (byte)(interlaced ? 1 : 0);
        var png = new MemoryStream();
        png.Write(PngDecoder.Signature);
        WriteChunk(png, "IHDR", header);
        if (palette is not null)
        {
            WriteChunk(png, "PLTE", palette);
        }
        WriteChunk(png, "IDAT", idat.ToArray());
        WriteChunk(png, "IEND", []);
        return png.ToArray();
    }

    public static void WriteChunk(Stream png, string type, byte[] body)
    {
        var length = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, body.Length);
        png.Write(length);
        byte[] typeAndBody = [.. Encoding.ASCII.GetBytes(type), .. body];
        png.Write(typeAndBody);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, PngDecoder.Crc32(typeAndBody));
        png.Write(crc);
    }

    private static readonly (int, int, int, int)[] Adam7 =
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

    private static byte[] Pack(List<int> values, int bitDepth, int rowBytes)
    {
        var packed = new byte[rowBytes];
        for (int i = 0; i < values.Count; i++)
        {
            if (bitDepth == 16)
            {
                BinaryPrimitives.WriteUInt16BigEndian(packed.AsSpan(2 * i), (ushort)values[i]);
            }
            else
            {
                int bit = i * bitDepth;
                packed[bit / 8] |= (byte)(values[i] << (8 - bitDepth - bit % 8));
            }
        }
        return packed;
    }

    /// <summary>PNG's filters, encoding side: each byte minus its predictor.</summary>
    private static byte[] Filter(byte filter, byte[] row, byte[] above, int bpp)
    {
        var output = new byte[row.Length];
        for (int i = 0; i < row.Length; i++)
        {
            int left = i >= bpp ? row[i - bpp] : 0, up = above[i], upLeft = i >= bpp ? above[i - bpp] : 0;
            int p = left + up - upLeft;
            int paeth = Math.Abs(p - left) <= Math.Abs(p - up) && Math.Abs(p - left) <= Math.Abs(p - upLeft) ? left
                : Math.Abs(p - up) <= Math.Abs(p - upLeft) ? up : upLeft;
            int predictor = filter switch { 0 => 0, 1 => left, 2 => up, 3 => (left + up) >> 1, _ => paeth };
            output[i] = (byte)(row[i] - predictor);
        }
        return output;
    }
}
