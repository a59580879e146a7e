using NativeVlm.Autograd;
using NativeVlm.Tensors;

namespace NativeVlm.Training;

/// <summary>torch.nn.utils.clip_grad_norm_ with the L2 norm over every gradient together.</summary>
public static class GradientClipping
{
    /// <summary>
    /// Scales every gradient by min(1, max_norm / (norm + 1e-6)) and returns the global L2 norm BEFORE
    /// clipping with that coefficient. Parameters without a gradient are skipped, as torch does.
    /// </summary>
    public static (float Norm, float ClipCoefficient) ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        List<Tensor> withGrad = parameters.Where(p => p.Grad != null).ToList();
        double sumOfSquares = 0;
        foreach (Tensor p in withGrad)
        {
            foreach (float g in p.Grad!.ToFloatArray())
            {
                sumOfSquares += (double)g * g;
            }
        }
        // torch computes the norm and the coefficient as fp32 tensors.
        float norm = (float)Math.Sqrt(sumOfSquares);
        float coefficient = Math.Min(1f, (float)maxNorm / (norm + 1e-6f));
        if (coefficient < 1f)
        {
            using var scope = new TensorScope();
            foreach (Tensor p in withGrad)
            {
                Tensor clipped = scope.Keep(Ops.Scale(p.Grad!, coefficient));
                p.Grad!.Dispose();
                p.Grad = clipped;
            }
        }
        return (norm, coefficient);
    }
}
