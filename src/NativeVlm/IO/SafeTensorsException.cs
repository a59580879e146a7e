namespace NativeVlm.IO;

/// <summary>
/// A safetensors file or sharded index that cannot be read as it is: the message starts with the
/// file and, where the fault belongs to one tensor, names it ("model.safetensors: tensor 'x': ...").
/// </summary>
public sealed class SafeTensorsException : Exception
{
    public SafeTensorsException(string filePath, string? tensorName, string detail)
        : base(tensorName is null ? $"{filePath}: {detail}" : $"{filePath}: tensor '{tensorName}': {detail}")
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    /// <summary>The file at fault: a shard, a single file, or the index.</summary>
    public string FilePath { get; }

    /// <summary>The tensor at fault; null when the fault is the file's (its length, its header's JSON).</summary>
    public string? TensorName { get; }
}
