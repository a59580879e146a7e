using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using NativeVlm.Vision;

namespace NativeVlm.Demo;

/// <summary>
/// Encodes an 8-bit RGB raster as a PNG file: the signature, IHDR (colour type 2, no interlace), one
/// IDAT holding the zlib stream of the rows, each prefixed with filter type 0 (none), and IEND; every
/// chunk is length, type, data and the CRC-32 of type and data. Filter 0 and one IDAT keep the bytes a
/// function of the pixels alone, so the demo's files are the same for the same seed.
/// </summary>
public static class PngEncoder
{
    private const byte ColourTypeRgb = 2;

    public static byte[] EncodeRgb(Raster raster)
    {
        if (raster.Channels != 3)
        {
            throw new ArgumentException($"an RGB PNG takes 3 channels, the raster has {raster.Channels}", nameof(raster));
        }
        using var file = new MemoryStream();
        file.Write(PngDecoder.Signature);

        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, raster.Width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), raster.Height);
        header[8] = 8;               // bit depth
        header[9] = ColourTypeRgb;   // bytes 10–12: deflate compression, adaptive filtering, no interlace: all 0
        WriteChunk(file, "IHDR", header);

        WriteChunk(file, "IDAT", CompressRows(raster));
        WriteChunk(file, "IEND", []);
        return file.ToArray();
    }

    private static byte[] CompressRows(Raster raster)
    {
        using var compressed = new MemoryStream();
        using (var zlib = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            for (int y = 0; y < raster.Height; y++)
            {
                zlib.WriteByte(0);
                zlib.Write(raster.Pixels, y * raster.RowBytes, raster.RowBytes);
            }
        }
        return compressed.ToArray();
    }

    private static void WriteChunk(Stream file, string type, ReadOnlySpan<byte> data)
    {
        var typeAndData = new byte[4 + data.Length];
        Encoding.ASCII.GetBytes(type, typeAndData);
        data.CopyTo(typeAndData.AsSpan(4));
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        file.Write(word);
        file.Write(typeAndData);
        BinaryPrimitives.WriteUInt32BigEndian(word, PngDecoder.Crc32(typeAndData));
        file.Write(word);
    }
}
