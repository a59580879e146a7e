using System.Buffers.Binary;
using System.Text;

namespace NativeVlm.Tests.Training.Metrics;

/// <summary>
/// A reader of TensorBoard event files written from the formats' descriptions alone, sharing no code
/// with the writer under test: TFRecord framing (python_io.py: uint64 length, uint32 masked CRC-32C of
/// the length, data, uint32 masked CRC-32C of the data, little-endian), the protobuf wire format
/// (protobuf.dev/programming-guides/encoding) and the fields of tensorflow/core/util/event.proto and
/// tensorflow/core/framework/summary.proto. Strict: a bad checksum, a field of the wrong wire type, an
/// unexpected field or trailing bytes throw.
/// </summary>
internal static class TfEventFile
{
    /// <summary>An Event: file_version is set on the first one only, tag and value on each scalar one.</summary>
    public sealed record Event(double WallTime, long Step, string? FileVersion, string? Tag, float? SimpleValue);

    public static List<Event> Read(byte[] file) => Records(file).Select(DecodeEvent).ToList();

    public static List<byte[]> Records(byte[] file)
    {
        var records = new List<byte[]>();
        int offset = 0;
        while (offset < file.Length)
        {
            if (file.Length - offset < 12)
            {
                throw new InvalidDataException($"record header truncated at byte {offset}");
            }
            ReadOnlySpan<byte> lengthBytes = file.AsSpan(offset, 8);
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            CheckCrc(lengthBytes, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(offset + 8)), $"length at byte {offset}");
            if (length > (ulong)(file.Length - offset - 16))
            {
                throw new InvalidDataException($"record at byte {offset} declares {length} bytes, past the end of the file");
            }
            byte[] data = file.AsSpan(offset + 12, (int)length).ToArray();
            CheckCrc(data, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(offset + 12 + (int)length)), $"data at byte {offset + 12}");
            records.Add(data);
            offset += 16 + (int)length;
        }
        return records;
    }

    /// <summary>CRC-32C bit by bit (reflected polynomial 0x82F63B78), as RFC 3720 section B.4 defines it; no table, unlike the writer.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int bit = 0; bit < 8; bit++)
            {
                crc = (crc >> 1) ^ (0x82F63B78u * (crc & 1));
            }
        }
        return ~crc;
    }

    /// <summary>TensorFlow's mask: rotate right by 15 bits, add 0xa282ead8.</summary>
    public static uint Mask(uint crc) => uint.RotateRight(crc, 15) + 0xA282EAD8;

    private static void CheckCrc(ReadOnlySpan<byte> bytes, uint stored, string what)
    {
        uint computed = Mask(Crc32C(bytes));
        if (computed != stored)
        {
            throw new InvalidDataException($"bad masked CRC-32C of the {what}: stored 0x{stored:x8}, computed 0x{computed:x8}");
        }
    }

    private static Event DecodeEvent(byte[] data)
    {
        double wallTime = 0;
        long step = 0; // proto3: an absent field is its default
        string? fileVersion = null, tag = null;
        float? simpleValue = null;
        foreach ((int field, int wireType, ulong varint, byte[] bytes) in Fields(data))
        {
            switch (field, wireType)
            {
                case (1, 1): wallTime = BitConverter.Int64BitsToDouble((long)varint); break;
                case (2, 0): step = (long)varint; break;
                case (3, 2): fileVersion = Encoding.UTF8.GetString(bytes); break;
                case (5, 2): (tag, simpleValue) = DecodeSummary(bytes); break;
                default: throw new InvalidDataException($"Event field {field} with wire type {wireType} is not expected");
            }
        }
        return new Event(wallTime, step, fileVersion, tag, simpleValue);
    }

    /// <summary>A Summary with exactly one Value, as one scalar per event is written.</summary>
    private static (string Tag, float Value) DecodeSummary(byte[] summary)
    {
        var values = Fields(summary).ToList();
        if (values is not [(1, 2, _, byte[] value)])
        {
            throw new InvalidDataException($"Summary should hold one Value (field 1), holds {string.Join(", ", values.Select(v => $"field {v.Field}"))}");
        }
        string? tag = null;
        float? simpleValue = null;
        foreach ((int field, int wireType, ulong varint, byte[] bytes) in Fields(value))
        {
            switch (field, wireType)
            {
                case (1, 2): tag = Encoding.UTF8.GetString(bytes); break;
                case (2, 5): simpleValue = BitConverter.Int32BitsToSingle((int)varint); break;
                default: throw new InvalidDataException($"Summary.Value field {field} with wire type {wireType} is not expected");
            }
        }
        return (tag ?? throw new InvalidDataException("Summary.Value without a tag"),
            simpleValue ?? throw new InvalidDataException("Summary.Value without a simple_value"));
    }

    /// <summary>
    /// The fields of a message in order: key varint = (field number &lt;&lt; 3) | wire type; then a varint
    /// (type 0), 8 little-endian bytes (type 1) or 4 (type 5), both returned in <c>Varint</c>, or a
    /// varint length and that many bytes (type 2).
    /// </summary>
    private static IEnumerable<(int Field, int WireType, ulong Varint, byte[] Bytes)> Fields(byte[] message)
    {
        int offset = 0;
        while (offset < message.Length)
        {
            ulong key = ReadVarint(message, ref offset);
            int field = (int)(key >> 3), wireType = (int)(key & 7);
            switch (wireType)
            {
                case 0:
                    yield return (field, 0, ReadVarint(message, ref offset), []);
                    break;
                case 1:
                    yield return (field, 1, BinaryPrimitives.ReadUInt64LittleEndian(Take(message, ref offset, 8)), []);
                    break;
                case 5:
                    yield return (field, 5, BinaryPrimitives.ReadUInt32LittleEndian(Take(message, ref offset, 4)), []);
                    break;
                case 2:
                    int length = checked((int)ReadVarint(message, ref offset));
                    yield return (field, 2, 0, Take(message, ref offset, length));
                    break;
                default:
                    throw new InvalidDataException($"wire type {wireType} (field {field}) is not one an Event uses");
            }
        }
    }

    private static ulong ReadVarint(byte[] message, ref int offset)
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte b = Take(message, ref offset, 1)[0];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return value;
            }
        }
        throw new InvalidDataException("varint longer than 10 bytes");
    }

    private static byte[] Take(byte[] message, ref int offset, int count)
    {
        if (count > message.Length - offset)
        {
            throw new InvalidDataException($"message truncated: {count} bytes wanted at {offset}, {message.Length - offset} left");
        }
        byte[] bytes = message.AsSpan(offset, count).ToArray();
        offset += count;
        return bytes;
    }
}
