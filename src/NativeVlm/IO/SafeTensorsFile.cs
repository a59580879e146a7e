using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text.Json;
using System.Text.Unicode;

namespace NativeVlm.IO;

/// <summary>
/// One safetensors file, memory-mapped:
/// <c>[u64 little-endian header length N][N bytes of JSON header][data section]</c>.
/// The header is parsed and checked when the file opens, so that every tensor it lists can be read
/// without further checks; the data section is never copied as a whole, readers take one tensor's
/// span of the mapping. The checks are safetensors' own, so that a file opens here exactly when it
/// opens in Hugging Face's library: offsets inside the data section, begin ≤ end, shape × dtype
/// size = byte count, and the tensors tile the data section with no overlap, gap or trailing bytes.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>safetensors' MAX_HEADER_SIZE: a corrupt length must not allocate gigabytes.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public const string MetadataKey = "__metadata__";

    private const int LengthPrefixBytes = 8;

    private readonly Dictionary<string, SafeTensorInfo> _byName;
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _data;
    private bool _disposed;

    private SafeTensorsFile(
        string filePath,
        IReadOnlyDictionary<string, string>? metadata,
        List<SafeTensorInfo> tensors,
        MemoryMappedFile map,
        MemoryMappedViewAccessor view,
        long dataStart)
    {
        FilePath = filePath;
        Metadata = metadata;
        Tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        _map = map;
        _view = view;
        byte* mapping = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref mapping);
        _data = mapping + view.PointerOffset + dataStart;
    }

    public string FilePath { get; }

    /// <summary>The header's <c>__metadata__</c> in file order; null when the header has none.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; }

    /// <summary>
    /// Every tensor in the order of its bytes, which is the header's order in every file Hugging Face
    /// writes; writing them back in this order reproduces such a file byte for byte.
    /// </summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    public static SafeTensorsFile Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        try
        {
            byte[] header = ReadHeader(path, stream);
            long dataStart = LengthPrefixBytes + header.LongLength;
            (IReadOnlyDictionary<string, string>? metadata, List<SafeTensorInfo> tensors) =
                ParseHeader(path, header, stream.Length - dataStart);
            MemoryMappedFile map = MemoryMappedFile.CreateFromFile(
                stream, mapName: null, capacity: 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            try
            {
                MemoryMappedViewAccessor view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                return new SafeTensorsFile(path, metadata, tensors, map, view, dataStart);
            }
            catch
            {
                map.Dispose();
                throw;
            }
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The tensor's bytes inside the mapping, valid until this file is disposed.</summary>
    public ReadOnlySpan<byte> GetBytes(SafeTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_byName.TryGetValue(info.Name, out SafeTensorInfo? own) || !ReferenceEquals(own, info))
        {
            throw new ArgumentException($"tensor '{info.Name}' of {info.FilePath} is not an entry of {FilePath}", nameof(info));
        }
        if (info.ByteCount > int.MaxValue)
        {
            throw new SafeTensorsException(FilePath, info.Name, $"{info.ByteCount} bytes do not fit one span (2 GiB at most)");
        }
        return new ReadOnlySpan<byte>(_data + info.DataBegin, (int)info.ByteCount);
    }

    private static byte[] ReadHeader(string path, FileStream stream)
    {
        long fileLength = stream.Length;
        if (fileLength < LengthPrefixBytes)
        {
            throw new SafeTensorsException(path, null, $"the file is {fileLength} bytes, too short for the 8-byte header length");
        }
        Span<byte> prefix = stackalloc byte[LengthPrefixBytes];
        stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)(fileLength - LengthPrefixBytes))
        {
            throw new SafeTensorsException(path, null, $"header length {headerLength} is larger than the file ({fileLength} bytes)");
        }
        if (headerLength > MaxHeaderBytes)
        {
            throw new SafeTensorsException(path, null, $"header length {headerLength} exceeds safetensors' limit of {MaxHeaderBytes} bytes");
        }
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        return header;
    }

    private static (IReadOnlyDictionary<string, string>? Metadata, List<SafeTensorInfo> Tensors) ParseHeader(
        string path, byte[] header, long dataLength)
    {
        // System.Text.Json checks UTF-8 only when a string is read, and then not as a JsonException.
        if (!Utf8.IsValid(header))
        {
            throw new SafeTensorsException(path, null, "the header is not valid UTF-8");
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new SafeTensorsException(path, null, $"the header is not valid JSON ({e.Message})");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new SafeTensorsException(path, null, $"the header is a JSON {document.RootElement.ValueKind}, not an object");
            }
            OrderedDictionary<string, string>? metadata = null;
            var tensors = new List<SafeTensorInfo>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty entry in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(entry.Name))
                {
                    throw new SafeTensorsException(path, entry.Name == MetadataKey ? null : entry.Name, $"'{entry.Name}' appears twice in the header");
                }
                if (entry.Name == MetadataKey)
                {
                    metadata = ParseMetadata(path, entry.Value);
                }
                else
                {
                    tensors.Add(ParseTensor(path, entry.Name, entry.Value, dataLength));
                }
            }
            // Stable: equal offsets (empty tensors) keep the header's order.
            List<SafeTensorInfo> byOffset = tensors.OrderBy(t => t.DataBegin).ThenBy(t => t.DataEnd).ToList();
            CheckTiling(path, byOffset, dataLength);
            return (metadata, byOffset);
        }
    }

    private static OrderedDictionary<string, string> ParseMetadata(string path, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new SafeTensorsException(path, null, $"{MetadataKey} is a JSON {value.ValueKind}, not an object of strings");
        }
        var metadata = new OrderedDictionary<string, string>(StringComparer.Ordinal);
        foreach (JsonProperty field in value.EnumerateObject())
        {
            if (field.Value.ValueKind != JsonValueKind.String)
            {
                throw new SafeTensorsException(path, null, $"{MetadataKey}.{field.Name} is a JSON {field.Value.ValueKind}, not a string");
            }
            if (!metadata.TryAdd(field.Name, field.Value.GetString()!))
            {
                throw new SafeTensorsException(path, null, $"{MetadataKey}.{field.Name} appears twice");
            }
        }
        return metadata;
    }

    private static SafeTensorInfo ParseTensor(string path, string name, JsonElement entry, long dataLength)
    {
        SafeTensorsException Fail(string detail) => new(path, name, detail);

        if (entry.ValueKind != JsonValueKind.Object)
        {
            throw Fail($"the header entry is a JSON {entry.ValueKind}, not an object");
        }
        if (!entry.TryGetProperty("dtype", out JsonElement dtypeJson) || dtypeJson.ValueKind != JsonValueKind.String)
        {
            throw Fail("dtype is missing or not a string");
        }
        string dtypeName = dtypeJson.GetString()!;
        if (!SafeTensorsDTypes.TryParse(dtypeName, out SafeTensorsDType dtype))
        {
            throw Fail($"unknown dtype '{dtypeName}'");
        }

        if (!entry.TryGetProperty("shape", out JsonElement shapeJson) || shapeJson.ValueKind != JsonValueKind.Array)
        {
            throw Fail("shape is missing or not an array");
        }
        var shape = new long[shapeJson.GetArrayLength()];
        int axis = 0;
        foreach (JsonElement dim in shapeJson.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out shape[axis]))
            {
                throw Fail($"shape {shapeJson.GetRawText()} has a dimension that is not an integer");
            }
            if (shape[axis] < 0)
            {
                throw Fail($"shape {shapeJson.GetRawText()} has a negative dimension");
            }
            axis++;
        }

        if (!entry.TryGetProperty("data_offsets", out JsonElement offsetsJson)
            || offsetsJson.ValueKind != JsonValueKind.Array
            || offsetsJson.GetArrayLength() != 2
            || !TryGetNonNegative(offsetsJson[0], out long begin)
            || !TryGetNonNegative(offsetsJson[1], out long end))
        {
            throw Fail("data_offsets must be two non-negative integers [begin, end]");
        }
        if (begin > end)
        {
            throw Fail($"data_offsets [{begin}, {end}] begin after they end");
        }
        if (end > dataLength)
        {
            throw Fail($"data_offsets [{begin}, {end}] lie outside the data section ({dataLength} bytes)");
        }

        long elementCount, byteCount;
        try
        {
            elementCount = shape.Aggregate(1L, (count, dim) => checked(count * dim));
            byteCount = checked(elementCount * dtype.SizeInBytes());
        }
        catch (OverflowException)
        {
            throw Fail($"shape {shapeJson.GetRawText()} has more elements than any file can hold");
        }
        if (byteCount != end - begin)
        {
            throw Fail($"shape {shapeJson.GetRawText()} of {dtypeName} needs {byteCount} bytes, data_offsets [{begin}, {end}] hold {end - begin}");
        }
        return new SafeTensorInfo(path, name, dtype, shape, elementCount, begin, end);
    }

    private static bool TryGetNonNegative(JsonElement element, out long value)
    {
        value = 0;
        return element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out value) && value >= 0;
    }

    /// <summary>In offset order, each tensor starts where the previous one ends and the last ends the file.</summary>
    private static void CheckTiling(string path, List<SafeTensorInfo> byOffset, long dataLength)
    {
        SafeTensorInfo? previous = null;
        foreach (SafeTensorInfo t in byOffset)
        {
            long expectedBegin = previous?.DataEnd ?? 0;
            if (t.DataBegin < expectedBegin)
            {
                throw new SafeTensorsException(path, t.Name,
                    $"data_offsets [{t.DataBegin}, {t.DataEnd}] overlap tensor '{previous!.Name}' [{previous.DataBegin}, {previous.DataEnd}]");
            }
            if (t.DataBegin > expectedBegin)
            {
                string after = previous is null ? "the start of the data section" : $"tensor '{previous.Name}'";
                throw new SafeTensorsException(path, t.Name,
                    $"data_offsets [{t.DataBegin}, {t.DataEnd}] leave {t.DataBegin - expectedBegin} bytes unaccounted for after {after}");
            }
            previous = t;
        }
        long covered = previous?.DataEnd ?? 0;
        if (covered != dataLength)
        {
            throw new SafeTensorsException(path, null,
                $"{dataLength - covered} bytes after the last tensor belong to no tensor (data section {dataLength} bytes)");
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
