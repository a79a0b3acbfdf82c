//! Amazon's registries (ECR): AWS credentials found the way AWS's own tools find them, and
//! the registry password ECR issues for them.

pub mod sigv4;
