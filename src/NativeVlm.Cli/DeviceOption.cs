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

    /// <summary>--bf16's help, the same on every verb that has the flag.</summary>
    public const string Bf16Help = "true: bf16 mixed precision as transformers' bf16=True: matmuls, linears, the LM head and " +
                                   "attention take bf16-rounded operands with fp32 accumulation (tensor cores on CUDA), and the activations kept for " +
                                   "backward are stored as bf16; weights, adapters, gradients and optimiser state stay f32 (default false).";

    /// <summary>A context on the device, computing in bf16 mixed precision when <paramref name="bf16"/> (--bf16).</summary>
    public static Context Open(string device, bool? bf16 = null)
    {
        (DeviceKind kind, int index) = Parse(device);
        Context context = Context.Create(kind, index);
        context.SetBf16MixedPrecision(bf16 == true);
        return context;
    }
}
