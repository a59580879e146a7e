using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Demo;
using NativeVlm.Quantization;
using NativeVlm.Tensors;
using NativeVlm.Training;
using NativeVlm.Training.Dpo;
using Xunit;

namespace NativeVlm.Tests.Training.Dpo;

/// <summary>
/// The reference log-prob cache without a model: pair keys that ignore batching and padding but not
/// content, values that read back bit for bit, a second precompute that computes nothing, and model
/// identities that tell quantisation modes apart. (Training with it: TrainCliTests.)
/// </summary>
public sealed class ReferenceLogProbCacheTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly BatchCollator _collator = new(padTokenId: 0);

    public void Dispose() => _dir.Dispose();

    /// <summary>Frames of <paramref name="height"/> × <paramref name="width"/>, all attended, pixel values from <paramref name="seed"/>.</summary>
    private static SampleImages Images(int frames, int height, int width, int seed)
    {
        var random = new Random(seed);
        float[] pixels = Enumerable.Range(0, frames * 3 * height * width).Select(_ => (float)random.NextDouble()).ToArray();
        byte[] mask = Enumerable.Repeat((byte)1, frames * height * width).ToArray();
        return new SampleImages(pixels, mask, frames, height, width, [], []);
    }

    private static DpoSample Pair(int row, int[] prompt, int[] chosen, int[] rejected, SampleImages? images) =>
        new(new RowLocation("pairs", row), prompt, chosen, rejected, images);

    private readonly DpoSample _small = Pair(0, [1, 5, 6], [7, 2], [8, 9, 2], Images(1, 4, 4, seed: 1));
    private readonly DpoSample _large = Pair(1, [1, 5, 6, 10, 11], [12, 13, 14, 2], [15, 2], Images(2, 6, 8, seed: 2));
    private readonly DpoSample _textOnly = Pair(2, [1, 3], [4, 2], [5, 2], null);

    [Fact]
    public void A_pairs_key_is_the_same_alone_and_padded_in_any_batch()
    {
        string small = ReferenceLogProbCache.PairKeys(_collator.CollateDpo([_small])).Single();
        string large = ReferenceLogProbCache.PairKeys(_collator.CollateDpo([_large])).Single();
        string textOnly = ReferenceLogProbCache.PairKeys(_collator.CollateDpo([_textOnly])).Single();

        // In this batch the small pair's tokens are padded and its frame padded to 6 × 8 in a slot of 2.
        Assert.Equal([large, small, textOnly], ReferenceLogProbCache.PairKeys(_collator.CollateDpo([_large, _small, _textOnly])));
        Assert.Equal(3, new[] { small, large, textOnly }.Distinct().Count());
    }

    [Fact]
    public void A_pairs_key_changes_with_any_token_or_pixel()
    {
        string key = Key(_small);
        SampleImages images = _small.Images!;
        float[] otherPixels = images.PixelValues.ToArray();
        otherPixels[^1] += 1e-6f;

        Assert.NotEqual(key, Key(_small with { Images = images with { PixelValues = otherPixels } }));
        Assert.NotEqual(key, Key(_small with { ChosenIds = _small.RejectedIds, RejectedIds = _small.ChosenIds }));
        // The same tokens split differently between prompt and completion score other tokens.
        Assert.NotEqual(key, Key(_small with { PromptIds = [.. _small.PromptIds, 7], ChosenIds = [2] }));
        Assert.NotEqual(key, Key(_small with { Images = null }));
    }

    [Fact]
    public void Values_read_back_bit_for_bit_and_a_second_precompute_computes_nothing()
    {
        // Values a double's shortest text must carry exactly, and the non-finite ones JSON has no number for.
        double[] values = [-Math.PI * 1e5, -1.0 / 3, double.Epsilon, -0.0, double.NegativeInfinity, -123.456789012345678];
        var samples = new[] { _small, _large, _textOnly };
        var data = new SampleList<DpoSample, DpoBatch>(samples, _collator.CollateDpo);
        var computedFor = new List<string>();
        DpoReferenceLogProbs Reference(DpoBatch batch)
        {
            Assert.Equal(1, batch.Batch);
            int i = computedFor.Count;
            computedFor.Add(ReferenceLogProbCache.PairKeys(batch).Single());
            return new DpoReferenceLogProbs([values[2 * i]], [values[2 * i + 1]]);
        }

        ReferenceLogProbCache first = ReferenceLogProbCache.Open(_dir.Root, "model-a");
        first.Precompute(data, Reference);
        ReferenceLogProbCache second = ReferenceLogProbCache.Open(_dir.Root, "model-a");
        second.Precompute(data, Reference);

        Assert.Equal((3, 0), (first.Computed, first.Reused));
        Assert.Equal((0, 3), (second.Computed, second.Reused));
        Assert.Equal(3, computedFor.Count);
        DpoReferenceLogProbs looked = second.Lookup(_collator.CollateDpo([_large, _textOnly, _small]));
        static long[] Bits(IEnumerable<double> v) => v.Select(BitConverter.DoubleToInt64Bits).ToArray();
        Assert.Equal(Bits([values[2], values[4], values[0]]), Bits(looked.Chosen));
        Assert.Equal(Bits([values[3], values[5], values[1]]), Bits(looked.Rejected));
    }

    [Fact]
    public void A_torn_last_line_is_computed_again_and_a_pair_not_cached_is_an_error()
    {
        var data = new SampleList<DpoSample, DpoBatch>([_small], _collator.CollateDpo);
        string path = Path.Combine(_dir.Root, "model-a.jsonl");
        File.WriteAllText(path, "{\"pair\":\"" + Key(_small) + "\",\"chos");
        int calls = 0;

        ReferenceLogProbCache cache = ReferenceLogProbCache.Open(_dir.Root, "model-a");
        cache.Precompute(data, _ =>
        {
            calls++;
            return new DpoReferenceLogProbs([-1.5], [-2.5]);
        });

        Assert.Equal(1, calls);
        Assert.Equal([-1.5], ReferenceLogProbCache.Open(_dir.Root, "model-a").Lookup(_collator.CollateDpo([_small])).Chosen);
        Assert.Throws<InvalidOperationException>(() => cache.Lookup(_collator.CollateDpo([_large])));
    }

    [Fact]
    public void Model_identity_follows_config_quantisation_and_backend_not_the_folder()
    {
        string snapshot = _dir.Path("snapshot");
        DemoSnapshot.Create(snapshot, seed: 1);
        string plain = ReferenceLogProbCache.ModelIdentity(snapshot, BaseWeightQuantization.None, DeviceKind.Cpu);

        Assert.Equal(plain, ReferenceLogProbCache.ModelIdentity(snapshot, BaseWeightQuantization.None, DeviceKind.Cpu));
        Assert.NotEqual(plain, ReferenceLogProbCache.ModelIdentity(snapshot, BaseWeightQuantization.Nf4, DeviceKind.Cpu));
        Assert.NotEqual(plain, ReferenceLogProbCache.ModelIdentity(snapshot, BaseWeightQuantization.None, DeviceKind.Cuda));
        string copy = _dir.Path("copy");
        Directory.CreateDirectory(copy);
        foreach (string file in Directory.GetFiles(snapshot))
        {
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        }
        Assert.Equal(plain, ReferenceLogProbCache.ModelIdentity(copy, BaseWeightQuantization.None, DeviceKind.Cpu));
        File.AppendAllText(Path.Combine(copy, "config.json"), " ");
        Assert.NotEqual(plain, ReferenceLogProbCache.ModelIdentity(copy, BaseWeightQuantization.None, DeviceKind.Cpu));
    }

    private string Key(DpoSample sample) => ReferenceLogProbCache.PairKeys(_collator.CollateDpo([sample])).Single();
}
