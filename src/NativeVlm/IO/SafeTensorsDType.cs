namespace NativeVlm.IO;

/// <summary>
/// Element types of a safetensors file, as its header spells them. Declared in safetensors' own
/// order (increasing alignment); <see cref="SafeTensorsDTypes.TryParse"/> maps the header's string.
/// </summary>
public enum SafeTensorsDType
{
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

public static class SafeTensorsDTypes
{
    private static readonly Dictionary<string, SafeTensorsDType> ByHeaderName = Enum.GetValues<SafeTensorsDType>()
        .ToDictionary(HeaderName, dtype => dtype, StringComparer.Ordinal);

    /// <summary>The string the header uses ("F32", "BOOL", "F8_E4M3", ...).</summary>
    public static string HeaderName(this SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.Bool => "BOOL",
        SafeTensorsDType.F8E5M2 => "F8_E5M2",
        SafeTensorsDType.F8E4M3 => "F8_E4M3",
        _ => dtype.ToString(),
    };

    public static bool TryParse(string headerName, out SafeTensorsDType dtype) =>
        ByHeaderName.TryGetValue(headerName, out dtype);

    public static int SizeInBytes(this SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.Bool or SafeTensorsDType.U8 or SafeTensorsDType.I8
            or SafeTensorsDType.F8E5M2 or SafeTensorsDType.F8E4M3 => 1,
        SafeTensorsDType.I16 or SafeTensorsDType.U16 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
        SafeTensorsDType.I32 or SafeTensorsDType.U32 or SafeTensorsDType.F32 => 4,
        SafeTensorsDType.F64 or SafeTensorsDType.I64 or SafeTensorsDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };
}
