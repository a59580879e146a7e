using System.Globalization;
using NativeVlm.Interop;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// The ops the model forward adds: Patchify (SigLIP's patch embedding conv as patchify + linear) and
/// IndexCopy (image features merged into the token embeddings), against the double reference.
/// </summary>
public class ModelOpTests
{
    // Data movement is linear in every input element, so the central difference has no truncation
    // error for any h; h = 1 leaves only cancellation, ~1e-16·|L| with |L| ≲ 300 here.
    private const double LinearStep = 1;

    // A gradient element that is one dout element added into zero is exact; 1e-12 covers the
    // finite difference's cancellation (see LinearStep).
    private static readonly Tol OneTermGradient = new(1e-12, 0);

    // (n, channels, height, width, patch): channels 1 and 3, patch 1, 2 and 4, non-square images,
    // a patch as large as the image, and a single image row of patches.
    public static IEnumerable<(int N, int C, int H, int W, int P)> PatchCases() =>
    [
        (2, 3, 4, 6, 2),
        (1, 1, 8, 4, 4),
        (1, 3, 3, 5, 1),
        (2, 1, 2, 6, 2),
        (1, 3, 8, 12, 4),
        (3, 1, 5, 3, 1),
        (2, 3, 4, 4, 4),
    ];

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Patchify_lays_out_each_patch_as_the_conv_kernel_sees_it(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(601);
        foreach ((int n, int c, int h, int w, int p) in PatchCases())
        {
            int patches = (h / p) * (w / p), k = c * p * p;
            OpCheck.Run(ctx, $"patchify pixels=[{n}, {c}, {h}, {w}] patch={p}",
                [Arg.Random("pixels", rng, [n, c, h, w])], [n, patches, k],
                t => Ops.Patchify(t[0], p),
                x => Reference.Patchify(x[0], n, c, h, w, p),
                // A permutation of the input; the reference conv with one-hot kernels adds exact zeros to
                // one exact product: bit-exact.
                forward: Tol.Exact,
                backward: OneTermGradient,
                fdStep: LinearStep);
        }
    }

    // Patchify + Linear against Conv2d: each output is a dot product of c·p² ≤ 48 terms plus a bias,
    // each of magnitude < 1 (inputs uniform in (−1, 1)); the weight and bias gradients sum ≤ 45 rows
    // (n · patches) of such terms and dpixels sums hidden = 5. Higham's bound γ₄₉·49 ≈ 49·49·U ≈
    // 1.4e-4 (U = 2⁻²⁴, fp32 unit roundoff) covers every one of them in any summation order; typical
    // errors are ~√48·U ≈ 4e-7, and a misplaced pixel or weight is off by O(0.1).
    private static readonly Tol Dot49 = new(1.5e-4, 0);

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Patchify_then_linear_with_the_reshaped_conv_weight_is_siglips_patch_embedding(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(602);
        const int hidden = 5;
        foreach ((int n, int c, int h, int w, int p) in PatchCases())
        {
            int patches = (h / p) * (w / p), k = c * p * p;
            OpCheck.Run(ctx, $"patchify + linear pixels=[{n}, {c}, {h}, {w}] patch={p} hidden={hidden}",
                [
                    Arg.Random("pixels", rng, [n, c, h, w]),
                    Arg.Random("weight", rng, [hidden, c, p, p]),
                    Arg.Random("bias", rng, [hidden]),
                ],
                [n, patches, hidden],
                t => Ops.Linear(Ops.Patchify(t[0], p), t[1].Reshape(hidden, k), t[2]),
                x => Reference.SiglipPatchEmbedding(x[0], x[1], x[2], n, c, h, w, hidden, p),
                Dot49, Dot49, LinearStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Patchify_refuses_an_image_that_is_not_a_whole_number_of_patches(string backend)
    {
        using Context ctx = Backends.Open(backend);
        using Tensor y = Tensor.Zeros(ctx, DType.F32, 1, 6, 12);
        foreach ((int h, int w, string named) in new[] { (5, 4, "height"), (4, 7, "width") })
        {
            using Tensor pixels = Tensor.FromArray(ctx, Rand.Uniform(new Random(603), 3 * h * w), 1, 3, h, w);

            // The C# op refuses it ...
            var managed = Assert.Throws<ArgumentException>(() => Ops.Patchify(pixels, 2));
            Assert.Contains(named, managed.Message);

            // ... and so does the native entry point on its own.
            var native = Assert.Throws<NvlmException>(() => Native.Check(NativeMethods.nvlm_patchify_forward(ctx.Handle,
                y.Buffer, pixels.Buffer, 1, 3, h, w, 2)));
            Assert.Equal(NvlmStatus.InvalidArgument, native.Status);
            Assert.Contains($"{named} = ", native.Message);
        }
    }

    // (rows, d, index): unordered indices, none (n_src = 0), every row replaced, one row, d = 1.
    public static IEnumerable<(int Rows, int D, int[] Index)> IndexCases() =>
    [
        (7, 3, [5, 0, 3]),
        (6, 4, []),
        (5, 2, [4, 1, 3, 0, 2]),
        (1, 17, [0]),
        (9, 1, [8, 2, 6]),
    ];

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void IndexCopy_replaces_the_indexed_rows_and_routes_their_gradient_to_src(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(604);
        foreach ((int rows, int d, int[] index) in IndexCases())
        {
            int nSrc = index.Length;
            OpCheck.Run(ctx, $"index_copy rows={rows} d={d} index=[{string.Join(", ", index)}]",
                [Arg.Random("x", rng, [rows, d]), Arg.Random("src", rng, [nSrc, d])], [rows, d],
                t => Ops.IndexCopy(t[0], t[1], OpCheck.Own(Tensor.FromArray(ctx, index, nSrc))),
                x => Reference.IndexCopy(x[0], x[1], index, rows, d),
                // Rows copied from x or src: bit-exact.
                forward: Tol.Exact,
                // Every dout row goes to exactly one of dx and dsrc.
                backward: OneTermGradient,
                fdStep: LinearStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void IndexCopy_index_out_of_range_or_repeated_throws_naming_its_position_and_value(string backend)
    {
        using Context ctx = Backends.Open(backend);
        const int rows = 50, d = 2, nSrc = 40;
        using Tensor x = Tensor.FromArray(ctx, Rand.Uniform(new Random(605), rows * d), rows, d);
        using Tensor src = Tensor.FromArray(ctx, Rand.Uniform(new Random(606), nSrc * d), nSrc, d);
        using Tensor dout = Tensor.FromArray(ctx, Rand.Uniform(new Random(607), rows * d), rows, d);
        using Tensor dx = Tensor.Zeros(ctx, DType.F32, rows, d);
        // One bad index among 40 distinct ones (rows 49, 48, … 10, index[i] = 49 − i): out of range
        // just above, below and far above, or repeating the value of an earlier position.
        foreach ((int position, int bad, string why) in new[]
                 {
                     (37, rows, "outside"), (29, -3, "outside"), (13, 1000, "outside"), (31, 49 - 17, "repeats index[17]"),
                 })
        {
            int[] index = Enumerable.Range(0, nSrc).Select(i => rows - 1 - i).ToArray();
            index[position] = bad;
            using Tensor indexTensor = Tensor.FromArray(ctx, index, nSrc);
            string named = string.Create(CultureInfo.InvariantCulture, $"index[{position}] = {bad}");

            var forward = Assert.Throws<NvlmException>(() =>
            {
                using Tensor y = Ops.IndexCopy(x, src, indexTensor);
                ctx.Synchronize();
            });
            Assert.Equal(NvlmStatus.InvalidArgument, forward.Status);
            Assert.Contains(named, forward.Message);
            Assert.Contains(why, forward.Message);

            // The backward reads the indices too and checks them the same way.
            var backward = Assert.Throws<NvlmException>(() => Native.Check(NativeMethods.nvlm_index_copy_backward(
                ctx.Handle, dx.Buffer, BufferHandle.Null, dout.Buffer, indexTensor.Buffer, rows, nSrc, d)));
            Assert.Equal(NvlmStatus.InvalidArgument, backward.Status);
            Assert.Contains(named, backward.Message);
            Assert.Contains(why, backward.Message);
        }
        Assert.All(dx.ToFloatArray(), v => Assert.Equal(0f, v)); // refused before anything was added
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void IndexCopy_refuses_mismatched_shapes_and_dtypes(string backend)
    {
        using Context ctx = Backends.Open(backend);
        using Tensor x = Tensor.Zeros(ctx, DType.F32, 6, 4);
        using Tensor src = Tensor.Zeros(ctx, DType.F32, 2, 4);
        using Tensor narrowSrc = Tensor.Zeros(ctx, DType.F32, 2, 3);
        using Tensor index = Tensor.FromArray(ctx, new[] { 1, 4 }, 2);
        using Tensor shortIndex = Tensor.FromArray(ctx, new[] { 1 }, 1);
        using Tensor floatIndex = Tensor.FromArray(ctx, new float[] { 1, 4 }, 2);

        Assert.Contains("src", Assert.Throws<ArgumentException>(() => Ops.IndexCopy(x, narrowSrc, index)).Message);
        Assert.Contains("index", Assert.Throws<ArgumentException>(() => Ops.IndexCopy(x, src, shortIndex)).Message);
        Assert.Contains("index", Assert.Throws<ArgumentException>(() => Ops.IndexCopy(x, src, floatIndex)).Message);

        // More sources than rows can never be distinct: the native entry point says so up front.
        using Tensor manySrc = Tensor.Zeros(ctx, DType.F32, 7, 4);
        using Tensor manyIndex = Tensor.FromArray(ctx, new[] { 0, 1, 2, 3, 4, 5, 0 }, 7);
        using Tensor y = Tensor.Zeros(ctx, DType.F32, 6, 4);
        var native = Assert.Throws<NvlmException>(() => Native.Check(NativeMethods.nvlm_index_copy_forward(ctx.Handle,
            y.Buffer, x.Buffer, manySrc.Buffer, manyIndex.Buffer, 6, 7, 4)));
        Assert.Equal(NvlmStatus.InvalidArgument, native.Status);
        Assert.Contains("n_src", native.Message);
    }
}
