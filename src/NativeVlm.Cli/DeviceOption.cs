using System.Globalization;
using NativeVlm.Tensors;

namespace NativeVlm.Cli;

/// <summary>
/// --device, read the same way on every verb: cpu, cuda (device 0) or cuda:N. The host checks it before
/// any command runs (<see cref="VerbCommand.Run"/>); commands open their context with <see cref="Open"/>.
/// </summary>
public static class DeviceOption
{
    public const string Help = "cpu, cuda or cuda:N (N: the CUDA device index, from 0).";

    /// <summary>The device's kind and index; a bad value is an error naming the flag and the allowed forms.</summary>
    public static (DeviceKind Kind, int Index) Parse(string device)
    {
        if (device == "cpu")
        {
            return (DeviceKind.Cpu, 0);
        }
        if (device == "cuda")
        {
            return (DeviceKind.Cuda, 0);
        }
        if (device.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(device.AsSpan("cuda:".Length), NumberStyles.None, CultureInfo.InvariantCulture, out int index))
        {
            return (DeviceKind.Cuda, index);
        }
        throw new ArgumentException($"--device {device}: expected cpu, cuda or cuda:N (N a device index, e.g. cuda:0)");
    }

    public static Context Open(string device)
    {
        (DeviceKind kind, int index) = Parse(device);
        return Context.Create(kind, index);
    }
}
