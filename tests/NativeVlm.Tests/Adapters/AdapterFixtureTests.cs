using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Checks;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Nn;
using NativeVlm.Tensors;
using NativeVlm.Training.Dpo;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Adapters;

/// <summary>
/// PEFT's adapters on tiny-idefics3 (LoRA and DoRA with a regex on the text model; DoRA with the
/// seeds' list, vision q/k/v included) against PEFT v0.13.2 and TRL v0.12.1: the adapted model's
/// outputs, the merge, and PEFT's files written back byte for byte. The fixtures' DPO step (log-probs,
/// losses, gradient of every adapter tensor) goes through the trainer's path in Training/Dpo/DpoObjectiveFixtureTests.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class AdapterFixtureTests(ITestOutputHelper output)
{
    public static TheoryData<string> AdapterFixtures => new() { "tiny-idefics3-lora", "tiny-idefics3-dora", "tiny-idefics3-dora-seedcfg" };

    private const string BaseModel = "tiny-idefics3";

    // The fixtures' fp32-vs-fp64 differences are ≤ 2.6e-6 on outputs (1.1e-5 on summed log-probs of
    // up to 150 in magnitude) and ≤ 1e-7 on gradients (their tolerance.json); an independent fp32
    // implementation sums in other orders, hence the README's atol 1e-4 on outputs, log-probs and
    // gradients, 1e-5 on losses (means, whose rounding averages), and rtol 1e-4.
    private static readonly ComparisonTolerances Tolerances = new(Absolute: 1e-4, Relative: 1e-4, LossAbsolute: 1e-5);
    private const double OutputAtol = 1e-4;

    private sealed class Adapted : IDisposable
    {
        public Adapted(string fixture)
        {
            Context = Context.Create(DeviceKind.Cpu);
            Model = Idefics3Model.Load(Fixtures.Path(BaseModel), Context);
            Adapters = LoraAdapterSet.Load(Model.Linears, Fixtures.Path(fixture));
        }

        public Context Context { get; }

        public Idefics3Model Model { get; }

        public LoraAdapterSet Adapters { get; }

        public void Dispose()
        {
            Adapters.Dispose();
            Model.Dispose();
            Context.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(AdapterFixtures))]
    public void Adapted_logits_logprobs_and_loss_match_peft(string fixture)
    {
        using var m = new Adapted(fixture);

        ReferenceComparison.Result result = ReferenceComparison.Run(m.Model, Fixtures.Path(BaseModel, "inputs.safetensors"),
            Fixtures.Path(fixture, "dpo_outputs.safetensors"), Tolerances, outputPrefix: "adapter.");

        AssertAllPassed(result);
    }

    [Theory]
    [MemberData(nameof(AdapterFixtures))]
    public void Merged_model_matches_peft_merge_and_unload(string fixture)
    {
        using var m = new Adapted(fixture);
        List<Linear> adapted = m.Adapters.Adapters.Select(a => a.Module).ToList();
        DpoBatch batch = PreferenceBatchFile.Read(Fixtures.Path(fixture, "dpo_batch.safetensors"));
        using SafeTensorsReader expected = SafeTensorsReader.Open(Fixtures.Path(fixture, "dpo_outputs.safetensors"));

        m.Adapters.MergeAndUnload();

        Assert.Empty(m.Adapters.Adapters);
        Assert.All(m.Model.Linears, l => Assert.Null(l.Adapter));
        AssertAllPassed(ReferenceComparison.Run(m.Model, Fixtures.Path(BaseModel, "inputs.safetensors"),
            Fixtures.Path(fixture, "dpo_outputs.safetensors"), Tolerances, outputPrefix: "merged."), "merged.policy_chosen_logps", "merged.policy_rejected_logps");
        // The merged model's DPO log-probs through the trainer's path (no adapters left to switch).
        DpoReferenceLogProbs merged = new DpoObjective(m.Model, m.Adapters, new DpoLoss(new DpoLossOptions())).SequenceLogProbs(batch);
        AssertClose("merged.policy_chosen_logps", merged.Chosen, expected.ReadFloat32("merged.policy_chosen_logps"), OutputAtol);
        AssertClose("merged.policy_rejected_logps", merged.Rejected, expected.ReadFloat32("merged.policy_rejected_logps"), OutputAtol);

        string mergedWeightsPath = Fixtures.Path(fixture, "merged_weights.safetensors");
        if (!File.Exists(mergedWeightsPath))
        {
            return; // the LoRA fixture stores none (its README: a LoRA merge is W + s·B·A, checked through the outputs)
        }
        using SafeTensorsReader mergedWeights = SafeTensorsReader.Open(mergedWeightsPath);
        Assert.Equal(mergedWeights.Names.Order(StringComparer.Ordinal), adapted.Select(l => l.Name + ".weight").Order(StringComparer.Ordinal));
        foreach (Linear linear in adapted)
        {
            string name = linear.Name + ".weight";
            Tensor weight = ((DenseWeight)linear.Weight).Tensor;
            Assert.Equal(mergedWeights.GetInfo(name).Shape.ToArray(), weight.Shape.ToArray());
            // Merged weights are O(1) and both sides round W + s·B·A and the per-row factor once or
            // twice in fp32 (PEFT) or once from double (here): a few ulps, far below 1e-6 (measured 6e-8).
            AssertClose(name, weight.ToFloatArray().Select(w => (double)w).ToArray(), mergedWeights.ReadFloat32(name), 1e-6);
        }
    }

    /// <summary>PEFT's own files come back byte for byte when loaded and saved again, and so does a second round.</summary>
    [Theory]
    [MemberData(nameof(AdapterFixtures))]
    public void Load_then_save_writes_peft_files_byte_for_byte(string fixture)
    {
        using var m = new Adapted(fixture);
        using var dir = new TempDirectory();
        string first = dir.Path("first"), second = dir.Path("second");

        m.Adapters.Save(first);
        m.Adapters.Dispose();
        using (LoraAdapterSet reloaded = LoraAdapterSet.Load(m.Model.Linears, first))
        {
            reloaded.Save(second);
        }

        foreach (string file in new[] { LoraConfig.FileName, LoraAdapterSet.WeightsFileName })
        {
            byte[] peft = File.ReadAllBytes(Fixtures.Path(fixture, file));
            Assert.Equal(peft, File.ReadAllBytes(Path.Combine(first, file)));
            Assert.Equal(peft, File.ReadAllBytes(Path.Combine(second, file)));
        }
    }

    private void AssertAllPassed(ReferenceComparison.Result result, params string[] computedElsewhere)
    {
        foreach (TensorComparison c in result.Compared)
        {
            output.WriteLine($"{c.Name}: {c.ComparedElements} compared, max abs {c.MaxAbsError:E2}, rel {c.RelativeError:E2}, {(c.Passed ? "pass" : "FAIL " + c.Problem)}");
        }
        Assert.NotEmpty(result.Compared);
        Assert.All(result.Compared, c => Assert.True(c.Passed, $"{c.Name}: max abs {c.MaxAbsError:E3}, rel {c.RelativeError:E3} {c.Problem}"));
        // Every output the fixture holds is compared, so nothing passes by being skipped.
        Assert.Equal(computedElsewhere.Order(StringComparer.Ordinal), result.NotProduced);
    }

    private void AssertClose(string name, double[] actual, float[] expected, double atol)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxAbs = actual.Zip(expected, (a, e) => Math.Abs(a - e)).Max();
        output.WriteLine($"{name}: max abs error {maxAbs:E2}");
        Assert.True(maxAbs <= atol, $"{name}: max abs error {maxAbs:E3} > {atol:E0}");
    }
}
