using NativeVlm.Autograd;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Nn;
using NativeVlm.Quantization;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// Load-time NF4 quantisation of tiny-idefics3. NF4's error on the fixture's random weights is 6–21%
/// of each output (relative; compare --quant nf4 shows it), so the quantised model is checked against the
/// f32 model whose Linear weights are the NF4 weights dequantised: the two compute the same products
/// and differ only in fp32 summation order.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class Nf4ModelTests
{
    private const string Model = "tiny-idefics3";

    // Measured 0 on the CPU: its NF4 layer dequantises 256-row tiles of W and multiplies them with the
    // same BLAS product as the dense layer, and every tiny weight fits one tile. Another summation
    // order (bigger weights, the CUDA kernels) moves O(1)–O(10) activations by a few fp32 ulps
    // through 2 vision and 2 decoder layers, far below 1e-4.
    private const double Atol = 1e-4;

    [Fact]
    public void Nf4_model_equals_the_f32_model_with_dequantised_weights()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model quantized = Idefics3Model.Load(Fixtures.Path(Model), ctx, BaseWeightQuantization.Nf4);
        using Idefics3Model dequantized = Idefics3Model.Load(Fixtures.Path(Model), ctx);
        foreach ((Linear nf4, Linear dense) in quantized.Linears.Zip(dequantized.Linears))
        {
            Assert.Equal(nf4.Name, dense.Name);
            dense.ReplaceWeight(new DenseWeight(((Nf4LinearWeight)nf4.Weight).Weight.Dequantize()));
        }

        using SafeTensorsReader inputsFile = SafeTensorsReader.Open(Fixtures.Path(Model, "inputs.safetensors"));
        foreach (string prefix in Idefics3Inputs.CasePrefixes(inputsFile))
        {
            Idefics3Inputs inputs = Idefics3Inputs.Read(inputsFile, prefix);
            Dictionary<string, float[]> expected = Outputs(dequantized, inputs), actual = Outputs(quantized, inputs);
            Assert.Equal(expected.Keys, actual.Keys);
            foreach ((string name, float[] values) in expected)
            {
                double maxError = values.Zip(actual[name], (e, a) => Math.Abs((double)e - a)).Max();
                Assert.True(maxError <= Atol, $"{prefix}{name}: max abs error {maxError:E2} > {Atol:E0}");
            }
        }
    }

    [Fact]
    public void Nf4_quantises_every_linear_but_not_the_lm_head_and_reports_the_bytes_saved()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path(Model), ctx, BaseWeightQuantization.Nf4);

        Assert.All(model.Linears, l => Assert.IsType<Nf4LinearWeight>(l.Weight));
        Assert.Equal(DType.F32, model.LmHead.DType);
        QuantizationReport report = Assert.IsType<QuantizationReport>(model.Quantization);
        Assert.Equal(model.Linears.Count, report.QuantizedModules);

        // Each weight's sizes from the layout alone: f32 before; after, two codes a byte, one byte of
        // absmax per 64 weights, one f32 nested absmax per 256 blocks, the f32 offset and the 256-entry f32 code.
        long before = 0, after = 0;
        foreach (Linear linear in model.Linears)
        {
            long weights = linear.OutFeatures * linear.InFeatures, blocks = (weights + 63) / 64;
            before += weights * 4;
            after += (weights + 1) / 2 + blocks + (blocks + 255) / 256 * 4 + 4 + 256 * 4;
        }
        Assert.Equal(before, report.BytesBefore);
        Assert.Equal(after, report.BytesAfter);
        Assert.Equal(before - after, report.BytesSaved);
    }

    [Fact]
    public void Unquantised_load_reports_nothing()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path(Model), ctx);

        Assert.Null(model.Quantization);
        Assert.All(model.Linears, l => Assert.IsType<DenseWeight>(l.Weight));
    }

    /// <summary>Every traced stage, the logits and the next-token log-probs of one case.</summary>
    private static Dictionary<string, float[]> Outputs(Idefics3Model model, Idefics3Inputs inputs)
    {
        var outputs = new Dictionary<string, float[]>();
        using var scope = new TensorScope();
        using IDisposable noGrad = Tape.NoGrad();
        Tensor hidden = model.Forward(inputs, (name, value) => outputs[name] = value.ToFloatArray());
        outputs["logits"] = model.Logits(hidden).ToFloatArray();
        outputs["next_token_logprobs"] = model.NextTokenLogProbs(hidden, inputs).ToFloatArray();
        return outputs;
    }
}
