using System.Buffers.Binary;

namespace NativeVlm.Data;

/// <summary>
/// Checks a parquet file's frame and the Thrift structure of its footer before Parquet.Net parses
/// it: Parquet.Net 6.1 skips unknown fields element by element and, on a corrupt footer whose list
/// sizes are far beyond its bytes, loops for minutes instead of failing. Here every size must fit the
/// bytes that remain, so any parse of the footer is bounded by its length. Only the compact
/// protocol's grammar is checked, not FileMetaData's fields: Parquet.Net reads those.
/// </summary>
internal static class ParquetFooterCheck
{
    private const int MagicBytes = 4;
    private const int MaxDepth = 64;

    /// <exception cref="DatasetException">The file is too short, lacks the PAR1 magic, or its footer breaks the compact protocol.</exception>
    public static void Check(string filePath)
    {
        byte[] footer = ReadFooter(filePath);
        try
        {
            var reader = new CompactReader(footer);
            reader.SkipStruct(depth: 0);
        }
        catch (InvalidDataException e)
        {
            throw new DatasetException(filePath, null, $"not a readable parquet file (its {footer.Length}-byte footer is corrupt: {e.Message})");
        }
    }

    private static byte[] ReadFooter(string filePath)
    {
        using FileStream stream = File.OpenRead(filePath);
        long length = stream.Length;
        if (length < 3 * MagicBytes)
        {
            throw new DatasetException(filePath, null, $"not a readable parquet file ({length} bytes, too short for the PAR1 frame)");
        }
        Span<byte> head = stackalloc byte[MagicBytes];
        stream.ReadExactly(head);
        Span<byte> tail = stackalloc byte[2 * MagicBytes];
        stream.Seek(-tail.Length, SeekOrigin.End);
        stream.ReadExactly(tail);
        if (!head.SequenceEqual("PAR1"u8) || !tail[MagicBytes..].SequenceEqual("PAR1"u8))
        {
            throw new DatasetException(filePath, null, "not a readable parquet file (no PAR1 magic at its start and end)");
        }
        uint footerLength = BinaryPrimitives.ReadUInt32LittleEndian(tail);
        if (footerLength > length - 3 * MagicBytes)
        {
            throw new DatasetException(filePath, null, $"not a readable parquet file (footer length {footerLength} does not fit the file's {length} bytes)");
        }
        var footer = new byte[footerLength];
        stream.Seek(-tail.Length - footerLength, SeekOrigin.End);
        stream.ReadExactly(footer);
        return footer;
    }

    /// <summary>Skips Thrift compact-protocol values, checking each size against the bytes left.</summary>
    private ref struct CompactReader(ReadOnlySpan<byte> bytes)
    {
        private readonly ReadOnlySpan<byte> _bytes = bytes;
        private int _position;

        public void SkipStruct(int depth)
        {
            if (depth > MaxDepth)
            {
                throw new InvalidDataException($"structs nested deeper than {MaxDepth} at byte {_position}");
            }
            while (true)
            {
                byte header = ReadByte();
                if (header == 0)
                {
                    return; // field stop
                }
                if (header >> 4 == 0)
                {
                    ReadVarint(); // a field id that does not fit the 4-bit delta follows as a zigzag i16
                }
                SkipValue(header & 0x0F, depth, inCollection: false);
            }
        }

        private void SkipValue(int type, int depth, bool inCollection)
        {
            switch (type)
            {
                case 1 or 2: // booleans: the value is the type itself in a field, one byte in a collection
                    if (inCollection)
                    {
                        ReadByte();
                    }
                    break;
                case 3:
                    ReadByte();
                    break;
                case 4 or 5 or 6:
                    ReadVarint();
                    break;
                case 7:
                    Skip(8, "double");
                    break;
                case 8:
                    Skip(ReadSize("binary length"), "binary length");
                    break;
                case 9 or 10:
                    SkipList(depth);
                    break;
                case 11:
                    SkipMap(depth);
                    break;
                case 12:
                    SkipStruct(depth + 1);
                    break;
                default:
                    throw new InvalidDataException($"unknown type {type} at byte {_position}");
            }
        }

        private void SkipList(int depth)
        {
            byte header = ReadByte();
            int count = header >> 4 == 0x0F ? ReadSize("list size") : header >> 4;
            CheckFits((ulong)count, "list size");
            for (int i = 0; i < count; i++)
            {
                SkipValue(header & 0x0F, depth + 1, inCollection: true);
            }
        }

        private void SkipMap(int depth)
        {
            int count = ReadSize("map size");
            if (count == 0)
            {
                return;
            }
            byte types = ReadByte();
            for (int i = 0; i < count; i++)
            {
                SkipValue(types >> 4, depth + 1, inCollection: true);
                SkipValue(types & 0x0F, depth + 1, inCollection: true);
            }
        }

        /// <summary>A size that fits the bytes left: every element of a collection takes one byte at least.</summary>
        private int ReadSize(string what)
        {
            ulong size = ReadVarint();
            CheckFits(size, what);
            return (int)size;
        }

        private readonly void CheckFits(ulong size, string what)
        {
            if (size > (ulong)(_bytes.Length - _position))
            {
                throw new InvalidDataException($"{what} {size} at byte {_position} exceeds the {_bytes.Length - _position} bytes left");
            }
        }

        private ulong ReadVarint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                byte b = ReadByte();
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0)
                {
                    return value;
                }
            }
            throw new InvalidDataException($"a varint longer than 10 bytes ends at byte {_position}");
        }

        private void Skip(int count, string what)
        {
            CheckFits((ulong)count, what);
            _position += count;
        }

        private byte ReadByte() =>
            _position < _bytes.Length ? _bytes[_position++] : throw new InvalidDataException("the footer ends inside a value");
    }
}
