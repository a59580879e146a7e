namespace NativeVlm.IO;

/// <summary>One tensor's header entry, validated: its bytes lie inside its file's data section.</summary>
public sealed class SafeTensorInfo
{
    private readonly long[] _shape;

    internal SafeTensorInfo(string filePath, string name, SafeTensorsDType dtype, long[] shape, long elementCount, long dataBegin, long dataEnd)
    {
        FilePath = filePath;
        Name = name;
        DType = dtype;
        _shape = shape;
        ElementCount = elementCount;
        DataBegin = dataBegin;
        DataEnd = dataEnd;
    }

    /// <summary>The file (or shard) that holds the tensor.</summary>
    public string FilePath { get; }

    public string Name { get; }

    public SafeTensorsDType DType { get; }

    public ReadOnlySpan<long> Shape => _shape;

    public long ElementCount { get; }

    /// <summary>data_offsets[0]: where the bytes start, counted from the end of the header.</summary>
    public long DataBegin { get; }

    /// <summary>data_offsets[1]: one past the last byte, counted from the end of the header.</summary>
    public long DataEnd { get; }

    public long ByteCount => DataEnd - DataBegin;

    public override string ToString() => $"{Name}: {DType.HeaderName()} [{string.Join(", ", _shape)}]";
}
