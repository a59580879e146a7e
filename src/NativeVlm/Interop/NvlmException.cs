namespace NativeVlm.Interop;

/// <summary>Status codes of nvlm.h (0 ok, negative errors).</summary>
public enum NvlmStatus
{
    Ok = 0,
    InvalidArgument = -1,
    OutOfMemory = -2,
    Unavailable = -3,
    Unsupported = -4,
    Device = -5,
    Internal = -6,
}

/// <summary>A failed native call: the status and the message the library kept for this thread.</summary>
public sealed class NvlmException(NvlmStatus status, string message) : Exception(message)
{
    public NvlmStatus Status { get; } = status;
}
