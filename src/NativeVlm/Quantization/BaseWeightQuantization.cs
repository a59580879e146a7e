namespace NativeVlm.Quantization;

/// <summary>How a model's Linear base weights are held after loading.</summary>
public enum BaseWeightQuantization
{
    /// <summary>Dense f32, as loaded.</summary>
    None,

    /// <summary>NF4 with double quantisation, as BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True).</summary>
    Nf4,
}

/// <summary>
/// What quantising the Linear base weights saved. Before is the weights as this engine holds them
/// dense (f32, whatever the checkpoint's dtype); after is the same weights quantised. Biases and
/// every other tensor are untouched and counted in neither.
/// </summary>
public sealed record QuantizationReport(int QuantizedModules, long BytesBefore, long BytesAfter)
{
    public long BytesSaved => BytesBefore - BytesAfter;

    public override string ToString() =>
        $"NF4 base weights: {QuantizedModules} Linear modules, {BytesBefore:N0} bytes in f32 → {BytesAfter:N0} bytes " +
        $"({BytesSaved:N0} bytes saved, {100.0 * BytesSaved / BytesBefore:F1}%)";
}
