namespace NativeVlm.Tensors;

/// <summary>Element types, numbered as nvlm_dtype.</summary>
public enum DType
{
    F32 = 0,
    BF16 = 1,
    U8 = 2,
    I32 = 3,
}

public static class DTypeExtensions
{
    public static int SizeInBytes(this DType dtype) => dtype switch
    {
        DType.F32 or DType.I32 => 4,
        DType.BF16 => 2,
        DType.U8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };
}
