using NativeVlm.Adapters;
using NativeVlm.Models;
using NativeVlm.Quantization;

namespace NativeVlm.Checks;

/// <summary>
/// Bytes of a model's weights per storage precision, and what training an adapter on it adds, from
/// the configs alone. Activations are not counted: they depend on the batch, the sequence length,
/// the image split and gradient checkpointing.
/// </summary>
/// <param name="Float32">Every tensor in f32.</param>
/// <param name="BFloat16">Every tensor in bf16.</param>
/// <param name="Nf4WithFloat32">
/// As <c>--quant nf4</c> loads the model: every Linear weight Idefics3Model.QuantizeLinears converts in
/// NF4 with double quantisation (<see cref="Nf4Bytes"/>), everything else (LM head, embeddings, norms,
/// biases, the patch convolution) in f32.
/// </param>
/// <param name="Nf4WithBFloat16">The same NF4 weights with everything else in bf16, as transformers' load_in_4bit with torch_dtype bfloat16.</param>
/// <param name="QuantizedElements">Parameters held in NF4.</param>
/// <param name="AdapterParameters">The adapter's trainable parameters (PEFT's count); 0 without an adapter.</param>
public sealed record MemoryEstimate(
    long Float32,
    long BFloat16,
    long Nf4WithFloat32,
    long Nf4WithBFloat16,
    long QuantizedElements,
    long AdapterParameters)
{
    /// <summary>Adapter weights, their gradients and AdamW's exp_avg and exp_avg_sq, all f32 (the trainer's master copies).</summary>
    public const int TrainingBytesPerAdapterParameter = 4 * sizeof(float);

    /// <summary>f32 adapter weights.</summary>
    public long AdapterWeights => AdapterParameters * sizeof(float);

    /// <summary>f32 gradients of the adapter weights.</summary>
    public long AdapterGradients => AdapterParameters * sizeof(float);

    /// <summary>AdamW's two f32 moments per adapter weight.</summary>
    public long AdamWMoments => 2 * AdapterParameters * sizeof(float);

    /// <summary>Adapter weights, gradients and moments together.</summary>
    public long AdapterTraining => AdapterParameters * TrainingBytesPerAdapterParameter;

    public static MemoryEstimate Of(Idefics3Config config, LoraConfig? adapter)
    {
        IReadOnlyList<ExpectedTensor> tensors = SnapshotTensors.Of(config);
        HashSet<string> quantised = Idefics3Model.LinearShapes(config).Select(l => $"{l.Name}.weight").ToHashSet();
        long parameters = tensors.Sum(t => t.ElementCount);
        long nf4 = tensors.Where(t => quantised.Contains(t.Name)).Sum(t => Nf4Bytes(t.ElementCount));
        long quantisedElements = tensors.Where(t => quantised.Contains(t.Name)).Sum(t => t.ElementCount);
        long rest = parameters - quantisedElements;
        return new MemoryEstimate(
            Float32: sizeof(float) * parameters,
            BFloat16: 2 * parameters,
            Nf4WithFloat32: nf4 + sizeof(float) * rest,
            Nf4WithBFloat16: nf4 + 2 * rest,
            QuantizedElements: quantisedElements,
            AdapterParameters: adapter == null ? 0 : PeftParameterCounts.FromConfig(config, adapter).Trainable);
    }

    /// <summary>
    /// The bytes Nf4Weight.Quantize allocates for a weight of <paramref name="elements"/> values (its
    /// ByteCount): two 4-bit codes a byte, a u8 absmax per <see cref="Nf4Weight.BlockSize"/> values, an
    /// f32 nested absmax per <see cref="Nf4Weight.NestedBlockSize"/> of those, the f32 offset and the
    /// f32 absmax code of <see cref="Nf4Weight.AbsmaxCodeSize"/> entries.
    /// </summary>
    public static long Nf4Bytes(long elements)
    {
        long blocks = Ceiling(elements, Nf4Weight.BlockSize);
        return Ceiling(elements, 2) + blocks
               + sizeof(float) * (Ceiling(blocks, Nf4Weight.NestedBlockSize) + 1 + Nf4Weight.AbsmaxCodeSize);
    }

    private static long Ceiling(long value, long divisor) => (value + divisor - 1) / divisor;
}
