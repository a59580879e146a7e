using NativeVlm.Adapters;
using NativeVlm.Checks;
using NativeVlm.Models;
using NativeVlm.Quantization;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests.Inspect;

/// <summary>
/// MemoryEstimate against the bytes a loaded model actually holds: the f32 and NF4 figures are exact
/// (no tolerance), and the adapter's training state is four f32 copies of the adapter tensors a
/// LoraAdapterSet builds.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class MemoryEstimateTests
{
    [Theory]
    [InlineData("tiny-idefics3")]
    [InlineData("tiny-qwen3-smvl")]
    public void The_f32_and_nf4_estimates_are_the_bytes_of_the_loaded_model(string fixture)
    {
        Idefics3Config config = Idefics3Config.Load(Fixtures.Path(fixture, "config.json"));
        MemoryEstimate estimate = MemoryEstimate.Of(config, adapter: null);
        using Context ctx = Backends.Open("cpu");

        using (Idefics3Model dense = Idefics3Model.Load(Fixtures.Path(fixture), ctx))
        {
            Assert.Equal(dense.Parameters.Sum(p => p.ByteCount), estimate.Float32);
        }
        using Idefics3Model quantised = Idefics3Model.Load(Fixtures.Path(fixture), ctx, BaseWeightQuantization.Nf4);
        Assert.Equal(quantised.Parameters.Sum(p => p.ByteCount), estimate.Nf4WithFloat32);
        Assert.Equal(quantised.Quantization!.BytesBefore / sizeof(float), estimate.QuantizedElements);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 100)]
    [InlineData(64, 257)]
    [InlineData(300, 300)]
    public void Nf4_bytes_are_what_the_quantiser_allocates(int rows, int columns)
    {
        using Context ctx = Backends.Open("cpu");
        var random = new Random(rows * 1000 + columns);
        float[] values = Enumerable.Range(0, rows * columns).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        using Tensor dense = Tensor.FromArray(ctx, values, rows, columns);
        using Nf4Weight quantised = Nf4Weight.Quantize(dense);

        Assert.Equal(quantised.ByteCount, MemoryEstimate.Nf4Bytes((long)rows * columns));
    }

    [Fact]
    public void The_adapter_training_state_is_four_f32_copies_of_the_adapter_tensors()
    {
        string snapshot = Fixtures.Path("tiny-idefics3");
        LoraConfig adapter = LoraConfig.Load(Fixtures.Path("tiny-idefics3-dora-seedcfg"));
        Idefics3Config config = Idefics3Config.Load(Path.Combine(snapshot, "config.json"));
        using Context ctx = Backends.Open("cpu");
        using Idefics3Model model = Idefics3Model.Load(snapshot, ctx);
        using LoraAdapterSet adapters = LoraAdapterSet.Create(model.Linears, adapter, seed: 0);

        MemoryEstimate estimate = MemoryEstimate.Of(config, adapter);

        long adapterBytes = adapters.Parameters.Sum(p => p.ByteCount);
        Assert.Equal(adapterBytes, estimate.AdapterWeights);
        Assert.Equal(adapterBytes, estimate.AdapterGradients);
        Assert.Equal(2 * adapterBytes, estimate.AdamWMoments);
        Assert.Equal(4 * adapterBytes, estimate.AdapterTraining);
    }
}
